"""Kubernetes on the nodes: every control plane and worker prepared up to
kubeadm (kernel, containerd, pinned kubeadm/kubelet/kubectl), the external
etcd's client certs at kubeadm's paths behind an etcd preflight gate; then
`kubeadm init` once on the first control plane, joins one at a time with
credentials minted just before each, the CNI, and the seed's checks as gates.

Practice mode (`kubernetes.bootstrap: false`) stops before kubeadm: the
config is left at /root/kubeadm.yaml and the certs in /root/certs for the
learner, and nothing runs kubeadm.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_tls as tls
from pulumi_command import remote

from config.spec import Spec

from .. import steps
from ..node import Node
from ..pki import PRIVATE_OUTPUTS, Pki
from . import payloads as payload
from .plan import (API_READY, CLIENT_CERT, CLIENT_KEY, CLIENT_NOT_AFTER, CNI, CONTROL_PLANES_JOINED, ENCRYPTION_SEED,
                   ETCD_CA, JOINED, UPGRADED, WORKERS_JOINED, checks_plan, control_plane_plan, encrypts, machine,
                   packages, upgrade_plan, workers_plan)


@dataclass(frozen=True)
class ControlPlaneArgs:
    spec: Spec
    nodes: Sequence[Node]
    pki: Pki
    etcd: Mapping[str, object]          # what etcd's Face names a step waits on (EtcdCluster.waits())
    api_ready: pulumi.Resource          # the load balancer answers on the VIP


def _machines(nodes: Sequence[Node]) -> dict[str, pulumi.Output]:
    return {machine(n.name): n.machine for n in nodes}


class ControlPlane(pulumi.ComponentResource):
    """plan.control_plane_plan on the control planes."""
    first: Node
    preflight: dict[str, remote.Command]
    init: Optional[remote.Command]
    joined: Optional[remote.Command]    # the last control-plane join (or init)
    kubeconfig: Optional[pulumi.Output]  # secret
    next_steps: Optional[list[str]]      # practice mode

    def __init__(self, name: str, args: ControlPlaneArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hakube:kubernetes:ControlPlane", name, None, opts)
        spec, pki = args.spec, args.pki
        self.first = first = args.nodes[0]
        cps = [n.name for n in args.nodes]
        sources = {ETCD_CA: pki.ca_cert_pem, CLIENT_CERT: pki.apiserver_etcd_client.cert_pem,
                   CLIENT_KEY: pki.apiserver_etcd_client.key_pem, CLIENT_NOT_AFTER: pki.apiserver_etcd_client.not_after,
                   **_machines(args.nodes)}
        if encrypts(spec):
            # the random secret every encryption key is derived from, kept in state
            sources[ENCRYPTION_SEED] = tls.PrivateKey(f"{name}-encryption-seed", algorithm="ED25519",
                                                      opts=pulumi.ResourceOptions(
                                                          parent=self, additional_secret_outputs=PRIVATE_OUTPUTS),
                                                      ).private_key_openssh
        made = steps.realize(control_plane_plan(name, spec), parent=self, nodes={n.name: n for n in args.nodes},
                             sources=sources, outside={API_READY: args.api_ready, **args.etcd})
        own = lambda node, step: made.get(f"{name}-{node}-{step}")  # noqa: E731
        self.packages = {n: own(n, "kube-packages") for n in cps}
        self.preflight = {n: own(n, "etcd-preflight") for n in cps}
        self.cert_checks = {f"{n}{suffix}": own(n, step) for n in cps
                            for suffix, step in (("", "cert-check"), ("-renewal", "kubeadm-certs-renewal"))
                            if own(n, step) is not None}
        # checks `make converge` runs again: every control plane reaches etcd
        self.converge: list[remote.Command] = [*self.preflight.values(), *self.cert_checks.values()]
        self.settled: list[pulumi.Resource] = [own(first.name, "kubeadm-config"), *self.preflight.values()]
        self.init, self.cni = own(first.name, "kubeadm-init"), own(first.name, "cni")
        self.joined = own(first.name, f"join-done-{cps[-1]}") if len(cps) > 1 else self.init
        kubeconfig = own(first.name, "kubeconfig")
        self.kubeconfig = pulumi.Output.secret(kubeconfig.stdout) if kubeconfig is not None else None
        self.next_steps = None if spec.kubernetes.bootstrap else payload.practice_commands(spec)
        if self.init is None:
            self.register_outputs({"next_steps": self.next_steps})
            return
        self.settled.append(own(first.name, "kubeadm-config-upload"))
        self.register_outputs({})


@dataclass(frozen=True)
class WorkersArgs:
    spec: Spec
    nodes: Sequence[Node]
    control_plane: ControlPlane


class Workers(pulumi.ComponentResource):
    """plan.workers_plan on the workers (their joins minted on the first control plane)."""
    last: Optional[pulumi.Resource]

    def __init__(self, name: str, args: WorkersArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hakube:kubernetes:Workers", name, None, opts)
        cp = args.control_plane
        plan = workers_plan(name, args.spec)
        made = steps.realize(plan, parent=self, nodes={n.name: n for n in (*args.nodes, cp.first)},
                             sources=_machines(args.nodes), outside={CONTROL_PLANES_JOINED: cp.joined})
        self.packages = {n.name: made[f"{name}-{n.name}-kube-packages"] for n in args.nodes}
        self.last = made[plan[-1].name] if args.nodes and cp.init is not None else cp.joined
        self.register_outputs({})


@dataclass(frozen=True)
class UpgradeArgs:
    spec: Spec
    control_planes: Sequence[Node]
    workers: Sequence[Node]
    packages: dict[str, pulumi.Resource]       # node name -> its kube-packages step
    after: Sequence[pulumi.Resource]           # every join done


class Upgrade(pulumi.ComponentResource):
    """`kubernetes.version` changed on a running cluster: plan.upgrade_plan."""
    last: pulumi.Resource

    def __init__(self, name: str, args: UpgradeArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hakube:kubernetes:Upgrade", name, None, opts)
        upgrade = upgrade_plan(name, args.spec)
        made = steps.realize(upgrade, parent=self, nodes={n.name: n for n in (*args.control_planes, *args.workers)},
                             outside={JOINED: list(args.after),
                                      **{packages(node): step for node, step in args.packages.items()}})
        self.last = made[upgrade[-1].name]
        self.register_outputs({})


@dataclass(frozen=True)
class ChecksArgs:
    spec: Spec
    control_plane: ControlPlane
    workers: Workers
    etcd_member: Node
    after: Sequence[pulumi.Resource] = ()


class Checks(pulumi.ComponentResource):
    """The seed's verification after bootstrap: plan.checks_plan."""

    def __init__(self, name: str, args: ChecksArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hakube:kubernetes:Checks", name, None, opts)
        checks = checks_plan(name, args.spec)
        cp = args.control_plane
        made = steps.realize(checks, parent=self, nodes={cp.first.name: cp.first,
                                                         args.etcd_member.name: args.etcd_member},
                             outside={WORKERS_JOINED: args.workers.last, CNI: cp.cni, UPGRADED: list(args.after)})
        self.converge = [made[s.name] for s in checks if s.converge]
        self.register_outputs({})
