"""The API front door: HAProxy on every load balancer, routing VIP:6443 to the
control planes' apiservers (checked with `GET /readyz`), and keepalived,
which holds the VIP: on the one load balancer, or floating between two.

One mechanism for both counts (rather than a static address for one): going
from one load balancer to two or back is a keepalived config change and a
VM added or removed, never a hand-over between a static address and VRRP
(which would put the VIP on two hosts while the removed one waits for its
delete, the last thing a `pulumi up` does).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_tls as tls
from pulumi_command import remote

from config.spec import Spec

from .. import steps
from ..node import Node
from ..pki import PRIVATE_OUTPUTS
from .plan import VRRP_KEY, plan

@dataclass(frozen=True)
class LoadBalancerArgs:
    spec: Spec
    nodes: Sequence[Node]


class LoadBalancer(pulumi.ComponentResource):
    haproxy: dict[str, remote.Command]
    keepalived: dict[str, remote.Command]
    ready: remote.Command               # the VIP accepts connections

    def __init__(self, name: str, args: LoadBalancerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hakube:loadbalancer:LoadBalancer", name, None, opts)
        # the VRRP password's source: a generated key kept in state
        vrrp = tls.PrivateKey(f"{name}-vrrp", algorithm="ED25519", opts=pulumi.ResourceOptions(
            parent=self, additional_secret_outputs=PRIVATE_OUTPUTS))
        steps_plan = plan(name, args.spec)
        made = steps.realize(steps_plan, parent=self, nodes={n.name: n for n in args.nodes},
                             sources={VRRP_KEY: vrrp.private_key_pem})
        self.haproxy = {n.name: made[f"{name}-{n.name}-haproxy"] for n in args.nodes}
        self.keepalived = {n.name: made[f"{name}-{n.name}-keepalived"] for n in args.nodes}
        self.ready = made[f"{name}-vip"]
        # checks-and-repairs `make converge` runs again: HAProxy and keepalived
        # running with their config, the VIP answering
        self.converge = [made[s.name] for s in steps_plan if s.converge]
        self.register_outputs({"vip": str(args.spec.kubernetes.vip)})
