"""The root component: wires network, image, PKI, nodes and the etcd cluster
of one stack, and exposes what the stack exports."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_libvirt as libvirt
import pulumi_tls as tls

from config.spec import Spec

from .etcd import EtcdCluster, EtcdClusterArgs, EtcdRestore, EtcdRestoreArgs
from .kubernetes import (Checks, ChecksArgs, ControlPlane, ControlPlaneArgs, Upgrade, UpgradeArgs, Workers,
                         WorkersArgs)
from .loadbalancer import LoadBalancer, LoadBalancerArgs
from .network import BaseImage, BaseImageArgs, Network, NetworkArgs
from .node import Node, NodeArgs
from . import sshkeys
from .pki import PRIVATE_OUTPUTS, Pki, PkiArgs
from . import monitoring, steps
from .remote import SshAccess
from .remote import step as make_step


@dataclass(frozen=True)
class ClusterArgs:
    spec: Spec
    # The admin's own key (secret config hakube:sshPrivateKey), when
    # hakube:ssh.publicKey is set; otherwise hakube generates one.
    ssh_private_key: Optional[pulumi.Input[str]] = None
    # During a rotation (secret config hakube:sshPreviousPrivateKey): the key
    # the running nodes accept until each node's ssh-key step has run.
    ssh_previous_private_key: Optional[pulumi.Input[str]] = None
    # The off-host backup remote's secret rclone options (secret config
    # hakube:etcdOffsiteSecrets), when etcd.backup.offsite is set.
    offsite_secrets: Optional[pulumi.Input[dict]] = None


class Cluster(pulumi.ComponentResource):
    def __init__(self, name: str, args: ClusterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hakube:cluster:Cluster", name, None, opts)
        spec = args.spec
        self._machines(name, spec, args)
        self._clusters(name, spec, args)
        exporters = self._exporters(name, spec)

        # `make converge`: the steps that check and repair what a node may
        # have drifted from (a stopped member, a missing firewall table, a
        # stopped HAProxy, an alarm, a stopped exporter), replaced so they
        # run again (`pulumi up --replace URN`); a plain `pulumi up` with no
        # change runs nothing, like every Pulumi program.
        converge = [*self.etcd.converge, *self.lb.converge, *self.control_plane.converge,
                    *(self.checks.converge if self.checks is not None else []), *exporters]
        self.converge_targets = pulumi.Output.all(*[r.urn for r in converge])
        self._outputs(spec)

    def _machines(self, name: str, spec: Spec, args: ClusterArgs) -> None:
        """The libvirt side: network, base image, PKI and one Node per host."""
        child = pulumi.ResourceOptions(parent=self)
        provider = libvirt.Provider(f"{name}-libvirt", uri=spec.libvirt.uri, opts=child)
        on_libvirt = pulumi.ResourceOptions(parent=self, providers={"libvirt": provider})

        self.ssh = self._ssh_access(name, spec, args.ssh_private_key, args.ssh_previous_private_key)
        network = Network(f"{name}-network", NetworkArgs(
            spec.network, hosts=tuple((n.fqdn, str(n.ip)) for n in spec.topology.nodes)), opts=on_libvirt)
        image = BaseImage(f"{name}-image", BaseImageArgs(spec.image, spec.libvirt), opts=on_libvirt)
        self.pki = Pki(f"{name}-pki", PkiArgs(spec.pki, spec.topology), opts=child)

        self.nodes: dict[str, Node] = {
            n.name: Node(f"{name}-{n.name}", NodeArgs(spec=spec, node=n, network=network,
                                                      image=image, ssh=self.ssh), opts=on_libvirt)
            for n in spec.topology.nodes
        }

    def _on(self, nodes) -> list[Node]:
        return [self.nodes[n.name] for n in nodes]

    def _clusters(self, name: str, spec: Spec, args: ClusterArgs) -> None:
        """etcd, the load balancers, the control planes and workers on the
        nodes; then a restore, an upgrade and the checks when the stack
        asks for them."""
        topo, child = spec.topology, pulumi.ResourceOptions(parent=self)
        etcd_args = EtcdClusterArgs(spec=spec, members=self._on(topo.etcd), pki=self.pki,
                                    offsite_secrets=args.offsite_secrets)
        self.etcd = EtcdCluster(f"{name}-etcd", etcd_args, opts=child)
        self.lb = LoadBalancer(f"{name}-lb", LoadBalancerArgs(spec=spec, nodes=self._on(topo.load_balancers)),
                               opts=child)
        self.control_plane = ControlPlane(f"{name}-cp", ControlPlaneArgs(
            spec=spec, nodes=self._on(topo.control_planes), pki=self.pki,
            etcd=self.etcd.waits(), api_ready=self.lb.ready), opts=child)
        self.workers = Workers(f"{name}-workers", WorkersArgs(
            spec=spec, nodes=self._on(topo.workers), control_plane=self.control_plane), opts=child)
        # Members the stack dropped leave the cluster once no apiserver lists them.
        etcd_settled = self.etcd.settle_membership(spec, self._on(topo.etcd), after=self.control_plane.settled)
        if spec.etcd.restore is not None:
            EtcdRestore(f"{name}-etcd-restore", EtcdRestoreArgs(
                spec=spec, etcd=self.etcd, members=self._on(topo.etcd),
                control_planes=self._on(topo.control_planes),
                after=[*etcd_settled, *self.etcd.backups.values(), *self.control_plane.settled]),
                opts=child)
        self.checks = None
        if spec.kubernetes.bootstrap:
            upgrade = Upgrade(f"{name}-upgrade", UpgradeArgs(
                spec=spec, control_planes=self._on(topo.control_planes), workers=self._on(topo.workers),
                packages={**self.control_plane.packages, **self.workers.packages},
                after=[self.workers.last, *self.control_plane.settled]), opts=child)
            self.checks = Checks(f"{name}-checks", ChecksArgs(
                spec=spec, control_plane=self.control_plane, workers=self.workers,
                etcd_member=self.nodes[topo.etcd[0].name], after=[upgrade.last]), opts=child)

    def _exporters(self, name: str, spec: Spec) -> list:
        """hakube's own exporter (backup age, certificate expiry) on etcd
        members and control planes; registered either way, so turning
        monitoring off removes it (METRICS=0)."""
        return [make_step(f"{name}-{n.name}-metrics", self.nodes[n.name],
                          steps.step_script(steps.METRICS, monitoring.exporter_values(spec, n)),
                          stdin=monitoring.probe_script(), parent=self, after=[self.nodes[n.name].ready])
                for n in monitoring.exporter_nodes(spec)]

    def _outputs(self, spec: Spec) -> None:
        """What the stack exports: targets for `make converge` and `make
        rebuild`, pending rebuilds, a summary, addresses and SSH access."""
        topo = spec.topology
        # `make rebuild NODE=...`: the root volume to replace (its domain is
        # replaced with it, delete-before-replace), one node per run.
        self.rebuild_targets = {n.name: self.nodes[n.name].root.urn for n in topo.nodes}
        # Nodes whose VM differs from the stack's disk/image/vCPU/memory keys:
        # those keys reach a node only when it is rebuilt.
        self.pending_rebuilds = pulumi.Output.all(*[self.nodes[n.name].pending for n in topo.nodes]).apply(
            _warn_pending)
        # What the stack is, in a few lines whose diff a preview shows on one
        # screen: versions, members, every certificate's expiry.
        self.summary = {
            "etcd": {"version": spec.etcd.version, "members": [n.name for n in topo.etcd]},
            "kubernetes": {"version": spec.kubernetes.version, "bootstrap": spec.kubernetes.bootstrap,
                           "controlPlanes": [n.name for n in topo.control_planes],
                           "workers": [n.name for n in topo.workers]},
            "loadBalancers": [n.name for n in topo.load_balancers], "vip": str(spec.kubernetes.vip),
            "certificatesNotAfter": pulumi.Output.all(**self.pki.not_after),
        }
        self.vip = str(spec.kubernetes.vip)
        self.node_ips = {n.name: str(n.ip) for n in topo.nodes}
        key_file = f"hakube-{spec.stack}.key"
        hosts_file = f"hakube-{spec.stack}.known_hosts"
        self.ssh_commands = {
            n.name: f"ssh -i {key_file} -o UserKnownHostsFile={hosts_file} {spec.ssh.user}@{n.ip}"
            for n in topo.nodes
        }
        self.known_hosts = pulumi.Output.all(*[
            node.host_public_key.apply(lambda k, n=node: f"{n.ip} {k}") for node in self.nodes.values()
        ]).apply(lambda lines: "\n".join(lines) + "\n")
        self.register_outputs({
            "vip": self.vip, "node_ips": self.node_ips, "etcd_endpoints": self.etcd.endpoints,
            "etcd_ca_cert": self.pki.ca_cert_pem, "ssh_private_key": self.ssh.private_key,
            "ssh_commands": self.ssh_commands, "known_hosts": self.known_hosts,
        })

    def _ssh_access(self, name: str, spec: Spec, private_key: Optional[pulumi.Input[str]],
                    previous: Optional[pulumi.Input[str]]) -> SshAccess:
        if spec.ssh.public_key:
            public = spec.ssh.public_key
            # Checked before anything uses either half: a mismatch fails the
            # run before a VM gets the key or a step dials with it.
            checked = pulumi.Output.secret(private_key).apply(lambda k: sshkeys.checked_pair(k, public))
            access = SshAccess(user=spec.ssh.user, private_key=checked,
                               public_key=pulumi.Output.unsecret(checked.apply(lambda _: public)))
            if previous is None:
                return access
            prev = pulumi.Output.secret(previous).apply(lambda k: sshkeys.checked_previous(k, public))
            return dataclasses.replace(access, previous_private_key=prev, previous_public_key=pulumi.Output.unsecret(
                prev.apply(lambda k: sshkeys.public_line(k, "hakube:sshPreviousPrivateKey"))))
        key = tls.PrivateKey(f"{name}-ssh", algorithm="ED25519", opts=pulumi.ResourceOptions(
            parent=self, additional_secret_outputs=PRIVATE_OUTPUTS))
        return SshAccess(user=spec.ssh.user, private_key=pulumi.Output.secret(key.private_key_openssh),
                         public_key=key.public_key_openssh)


def _warn_pending(lines: list) -> list:
    pending = [line for line in lines if line]
    if pending:
        pulumi.log.warn("VM keys changed for nodes that keep their VM until rebuilt, one per run "
                        "(`make rebuild STACK=<stack> NODE=<node>`; etcd members and load balancers): "
                        + "; ".join(pending))
    return pending
