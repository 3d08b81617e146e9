"""The external etcd cluster: per member, idempotent steps over SSH
(prepare -> install -> certs -> config -> units -> firewall), then each
member started or joined one after another (a member new to a running
cluster joins as a learner and is promoted), one cluster health gate, a
rolling restart chain that applies later changes one member at a time
without losing quorum, and a membership step that removes the members the
stack no longer configures before their VMs go.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import pulumi
from pulumi_command import remote

from config.spec import Spec

from ..node import Node
from ..pki import Pki
from .. import steps
from . import payloads as payload
from .plan import (CA, CONTROL_PLANES_DONE, Face, HEALTHCHECK_CERT, HEALTHCHECK_KEY, MEMBER_SOURCES, OFFSITE_SECRETS,
                   PEER_CA, RESTARTS_DONE, SETTLED, member_source, membership_plan, plan,
                   restore_offsite, restore_plan)

HERE = Path(__file__).parent


@dataclass(frozen=True)
class EtcdClusterArgs:
    spec: Spec
    members: Sequence[Node]
    pki: Pki
    # The off-host remote's secret rclone options (secret config
    # hakube:etcdOffsiteSecrets, checked by config.spec.offsite_secrets).
    offsite_secrets: Optional[pulumi.Input[dict]] = None


@dataclass
class MemberSteps:
    """A member's steps that other components wait on."""
    install: remote.Command
    certs: remote.Command
    start: remote.Command
    restart: remote.Command


def sources(args: EtcdClusterArgs) -> dict[str, pulumi.Output]:
    """The outputs the plan's Derived values read, by the plan's names."""
    pki = args.pki
    out = {CA: pki.ca_cert_pem, PEER_CA: pki.peer_ca_cert_pem, HEALTHCHECK_CERT: pki.healthcheck_client.cert_pem,
           HEALTHCHECK_KEY: pki.healthcheck_client.key_pem,
           OFFSITE_SECRETS: pulumi.Output.from_input(args.offsite_secrets or {})}
    for member in args.members:
        certs = pki.members[member.name]
        out.update(zip((member_source(member.name, w) for w in MEMBER_SOURCES), (
            certs.server.cert_pem, certs.server.key_pem, certs.peer.cert_pem, certs.peer.key_pem,
            certs.server.not_after, certs.peer.not_after)))
    return out


class EtcdCluster(pulumi.ComponentResource):
    """The plan's steps (plan.py), in its order (the state's order, which
    `pulumi destroy` reads); the membership step last (`settle_membership`,
    once the control planes are done)."""
    name: str
    endpoints: list[str]
    etcdctl_env: str
    health: remote.Command
    steps: dict[str, MemberSteps]
    converge: list[remote.Command]      # the checks-and-repairs `make converge` runs again

    def __init__(self, name: str, args: EtcdClusterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hakube:etcd:EtcdCluster", name, None, opts)
        topo = args.spec.topology
        self.endpoints = list(topo.etcd_client_endpoints)
        self.etcdctl_env = payload.etcdctl_env(topo)
        backup = args.spec.etcd.backup
        self.latest_snapshot = f"{backup.dir}/latest.db" if backup.enabled else None
        self.name = name
        steps_plan = plan(name, args.spec)
        made = steps.realize(steps_plan, parent=self, nodes={m.name: m for m in args.members}, sources=sources(args))
        own = lambda m, step: made[f"{name}-{m}-{step}"]  # noqa: E731
        self.steps = {m.name: MemberSteps(*(own(m.name, s) for s in ("install", "certs", "start", "restart")))
                      for m in args.members}
        self.converge = [made[s.name] for s in steps_plan if s.converge]
        self.backups = {m.name: own(m.name, "backup") for m in args.members}
        self.offsite = {m.name: own(m.name, "offsite") for m in args.members}
        self.health = made[f"{name}-health"]
        self.last_restart = self.steps[args.members[-1].name].restart
        self.membership: Optional[remote.Command] = None
        self.settled: list[pulumi.Resource] = [self.last_restart]
        self.register_outputs({"endpoints": self.endpoints, "etcdctl_env": self.etcdctl_env,
                               "latest_snapshot": self.latest_snapshot})

    def waits(self) -> dict[str, object]:
        """What a step outside etcd waits on, by the names of etcd's Face."""
        return {Face.INSTALLED: [s.install for s in self.steps.values()], Face.HEALTHY: self.health,
                Face.RESTARTED: self.last_restart}

    def settle_membership(self, spec: Spec, members: Sequence[Node],
                          after: Sequence[pulumi.Resource]) -> list[pulumi.Resource]:
        """The membership plan on `members`, once `after` (the control
        planes, whose etcd endpoint lists drop the leaving members first) is
        done. Returns what is settled once the membership is."""
        made = steps.realize(membership_plan(self.name, spec), parent=self, nodes={m.name: m for m in members},
                             outside={RESTARTS_DONE: self.last_restart, CONTROL_PLANES_DONE: list(after)})
        self.membership = made[f"{self.name}-membership"]
        self.settled = list(made.values())
        return self.settled


@dataclass(frozen=True)
class EtcdRestoreArgs:
    spec: Spec
    etcd: "EtcdCluster"
    members: Sequence[Node]
    control_planes: Sequence[Node]     # their apiservers pause during the restore
    after: Sequence[pulumi.Resource]   # everything that must be settled first


class EtcdRestore(pulumi.ComponentResource):
    """Every member restored from the one snapshot named in `etcd.restore`
    (plan.restore_plan). Each member also keeps a marker, written only
    after the cluster gate, so a failed restore is redone whole by the next
    `pulumi up`."""

    def __init__(self, name: str, args: EtcdRestoreArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hakube:etcd:EtcdRestore", name, None, opts)
        nodes = {n.name: n for n in (*args.members, *args.control_planes)}
        steps.realize(restore_plan(name, args.spec), parent=self, nodes=nodes, outside={
            SETTLED: list(args.after), **{restore_offsite(m.name): [args.etcd.offsite[m.name]]
                                          for m in args.members if m.name in args.etcd.offsite}})
        self.register_outputs({"snapshot_sha256": args.spec.etcd.restore.sha256})
