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
from pathlib import Path
from typing import Optional, Sequence

import pulumi
import pulumi_tls as tls
from pulumi_command import remote

from config.spec import Spec

from .. import steps
from ..node import Node
from ..pki import PRIVATE_OUTPUTS
from ..remote import step
from . import payloads as payload

HERE = Path(__file__).parent


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
        spec = args.spec
        k8s = spec.kubernetes
        values = {"API_PORT": k8s.api_port, "VIP": k8s.vip}
        cfg = payload.haproxy_cfg(spec)

        self.haproxy, self.keepalived = {}, {}
        for node in args.nodes:
            self.haproxy[node.name] = step(
                f"{name}-{node.name}-haproxy", node, steps.step_script(HERE / "haproxy.sh", values),
                stdin=cfg, parent=self, after=[node.ready])

        secret_key = tls.PrivateKey(f"{name}-vrrp", algorithm="ED25519", opts=pulumi.ResourceOptions(
            parent=self, additional_secret_outputs=PRIVATE_OUTPUTS))
        auth = pulumi.Output.secret(secret_key.private_key_pem.apply(payload.auth_pass))
        previous: list = []
        for node in args.nodes:
            n = spec.topology.node(node.name)
            # One at a time, the preferred one first: a joining load balancer
            # starts as backup under a master it already hears.
            self.keepalived[node.name] = step(
                f"{name}-{node.name}-keepalived", node,
                steps.step_script(HERE / "keepalived.sh", values),
                stdin=auth.apply(lambda a, n=n: payload.keepalived_conf(spec, n, a)), secret=True,
                parent=self, after=[self.haproxy[node.name], *previous])
            previous = [self.keepalived[node.name]]
            # A load balancer that leaves the stack stops keepalived before
            # its VM goes (a backup leaves quietly; a master hands the VIP
            # over at once rather than after ~3 s of silence). A step of its
            # own that does nothing else and is never replaced: the delete of
            # a replaced step runs too (after its replacement's create), and
            # the keepalived step is replaced by `make converge`.
            step(
                f"{name}-{node.name}-keepalived-leave", node.connection, "true",
                delete=steps.step_script(HERE / "keepalived-stop.sh", {}),
                parent=self, after=[self.keepalived[node.name]])

        first = args.nodes[0]
        self.ready = step(f"{name}-vip", first, steps.step_script(HERE / "vip.sh", values),
                          parent=self, after=[*self.haproxy.values(), *self.keepalived.values()])
        # checks-and-repairs `make converge` runs again: HAProxy and keepalived
        # running with their config, the VIP answering
        self.converge = [*self.haproxy.values(), *self.keepalived.values(), self.ready]
        self.register_outputs({"vip": str(k8s.vip)})
