"""The stack's typed, validated specification.

`load(raw, stack)` turns the raw `hakube:*` config of one stack into a frozen
`Spec`, or raises `ConfigError` listing every problem with its key path.
Nothing here knows about Pulumi resources.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..reader import HOSTNAME_LABEL, ConfigError, Problems, Section
from ..topology import Topology, build_topology
from .etcd import (DEFAULT_BACKUP, DEFAULT_ETCD_VERSION, DEFAULT_MAINTENANCE, OFFSITE_SECRET_KEY, EtcdSpec,
                   OffsiteSpec, TuningSpec, _etcd, offsite_secrets)
from .kubernetes import CNI_DEFAULT_VERSIONS, DEFAULT_KUBERNETES_VERSION, KubernetesSpec, _kubernetes
from .monitoring import MonitoringSpec, _monitoring
from .network import ImageSpec, LibvirtSpec, NetworkSpec, SshSpec, _image, _libvirt, _network, _ssh
from .nodes import REBUILDABLE_ROLES, ROLES, RoleSpec, _roles
from .pki import PkiSpec, _pki


NAMESPACE = "hakube"


SECRET_KEYS = ("sshPrivateKey", "sshPreviousPrivateKey", "etcdOffsiteSecrets")


@dataclass(frozen=True)
class Spec:
    project: str
    stack: str
    libvirt: LibvirtSpec
    network: NetworkSpec
    image: ImageSpec
    ssh: SshSpec
    roles: Mapping[str, RoleSpec]
    kubernetes: KubernetesSpec
    etcd: EtcdSpec
    pki: PkiSpec
    topology: Topology = field(repr=False)
    # `make rebuild NODE=...` (HAKUBE_REBUILD): the one node whose VM takes
    # the configured disk, image, vCPUs and memory in this run. Every other
    # node keeps the VM it has (ignore_changes), so no edit of those keys
    # replaces a VM by itself.
    rebuild: str | None = None
    monitoring: MonitoringSpec = MonitoringSpec()

    @property
    def prefix(self) -> str:
        """Prefix of every libvirt object name, unique per stack on one host."""
        return f"{self.project}-{self.stack}"


def load(raw: Mapping[str, Any], stack: str, project: str = NAMESPACE,
         rebuild: str | None = None) -> Spec:
    """Parse the `hakube:*` config of one stack. `raw` maps keys without the
    namespace (`nodes`, `etcd`, ...) to their YAML/JSON values."""
    problems = Problems()
    root = Section(NAMESPACE, dict(raw), problems, sep=":")

    if not HOSTNAME_LABEL.match(stack) or len(stack) > 40:
        problems.add("stack name", f"{stack!r} is used in VM, network and volume names: use "
                     "lower-case letters, digits and '-' (at most 40), e.g. `pulumi stack init lab-a`")

    libvirt = _libvirt(root.section("libvirt"))
    network = _network(root.section("network"), stack, project)
    image = _image(root, stack, project)
    ssh = _ssh(root.section("ssh"))
    roles = _roles(root.section("nodes"), network)
    kubernetes = _kubernetes(root.section("kubernetes"), network, stack)
    etcd = _etcd(root.section("etcd"), stack)
    pki = _pki(root.section("pki"))
    monitoring = _monitoring(root.section("monitoring"))
    root.seen.update(SECRET_KEYS)
    root.finish()
    problems.raise_if_any()

    topology = build_topology(stack=stack, prefix=f"{project}-{stack}", roles=roles,
                              vip=kubernetes.vip, cidr=network.cidr, gateway=network.gateway,
                              domain=network.domain, problems=problems)
    _check_addresses(topology, network, kubernetes, problems)
    if rebuild:
        names = {n.name: n.role for n in topology.nodes}
        if rebuild not in names:
            problems.add("rebuild (HAKUBE_REBUILD)", f"{rebuild!r} is not a node of stack {stack}; its "
                         "nodes are " + ", ".join(sorted(names)))
        elif names[rebuild] not in REBUILDABLE_ROLES:
            problems.add("rebuild (HAKUBE_REBUILD)", f"{rebuild} is a {names[rebuild]} node: hakube rebuilds "
                         "etcd members and load balancers only (a Kubernetes node needs drain, delete and "
                         "re-join around its new VM, not automated yet). Its VM keeps its shape; see "
                         "README 'Changes that replace VMs'")
    if etcd.recover:
        members = [n.name for n in topology.etcd]
        if etcd.recover.source not in members:
            problems.add("hakube:etcd.recover.from", f"{etcd.recover.source!r} is not an etcd member of stack "
                         f"{stack}; name the member whose data survived: one of {', '.join(members)}")
    problems.raise_if_any()
    return Spec(project=project, stack=stack, libvirt=libvirt, network=network, image=image,
                ssh=ssh, roles=roles, kubernetes=kubernetes, etcd=etcd, pki=pki, topology=topology,
                rebuild=rebuild or None, monitoring=monitoring)


def _check_addresses(topology: Topology, network: NetworkSpec, k8s: KubernetesSpec,
                     problems: Problems) -> None:
    cidr = network.cidr
    reserved = {cidr.network_address: "the network address", cidr.broadcast_address:
                "the broadcast address", network.gateway: "the gateway"}
    seen: dict[ipaddress.IPv4Address, str] = {}
    for node in topology.nodes:
        path = f"hakube:nodes.{node.role}.ips"
        if node.ip not in cidr:
            problems.add(path, f"{node.name} {node.ip} is outside the node subnet {cidr}")
        elif node.ip in reserved:
            problems.add(path, f"{node.name} {node.ip} is {reserved[node.ip]} of {cidr}")
        if node.ip in seen:
            problems.add(path, f"{node.name} {node.ip} is already used by {seen[node.ip]}")
        seen[node.ip] = node.name
    vip_path = "hakube:kubernetes.vip"
    if k8s.vip not in cidr:
        problems.add(vip_path, f"{k8s.vip} is outside the node subnet {cidr}")
    elif k8s.vip in reserved:
        problems.add(vip_path, f"{k8s.vip} is {reserved[k8s.vip]} of {cidr}")
    if k8s.vip in seen:
        problems.add(vip_path, f"{k8s.vip} is the address of node {seen[k8s.vip]}; the VIP must "
                     "be an address of its own (HAProxy binds it)")


# what the rest of hakube imports from config.spec, whichever section defines it
__all__ = ["CNI_DEFAULT_VERSIONS", "ConfigError", "DEFAULT_BACKUP", "DEFAULT_ETCD_VERSION",
           "DEFAULT_KUBERNETES_VERSION", "DEFAULT_MAINTENANCE", "EtcdSpec", "ImageSpec", "KubernetesSpec", "LibvirtSpec", "MonitoringSpec",
           "NAMESPACE", "NetworkSpec", "OFFSITE_SECRET_KEY", "OffsiteSpec", "PkiSpec", "ROLES", "RoleSpec",
           "SECRET_KEYS", "Spec", "SshSpec", "TuningSpec", "load", "offsite_secrets"]
