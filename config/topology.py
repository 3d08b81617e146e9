"""The cluster's derived topology: every node's name, role, address and MAC,
the etcd initial-cluster string and every certificate's SANs.

Everything here follows from the spec alone, so `pulumi preview` shows the
whole plan and two runs derive the same names.
"""
from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:  # pragma: no cover
    from .reader import Problems
    from .spec import RoleSpec

ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380


@dataclass(frozen=True)
class NodeSpec:
    name: str                      # hostname, e.g. etcd-01
    role: str                      # loadBalancer | etcd | controlPlane | workers
    ip: ipaddress.IPv4Address
    mac: str
    vcpu: int
    memory_mib: int
    disk_gib: int
    domain_name: str               # libvirt domain name, unique per stack: hakube-dev-etcd-01
    fqdn: str

    @property
    def peer_url(self) -> str:
        return f"https://{self.ip}:{ETCD_PEER_PORT}"

    @property
    def client_url(self) -> str:
        return f"https://{self.ip}:{ETCD_CLIENT_PORT}"


def derive_mac(prefix: str, name: str) -> str:
    """A stable MAC in QEMU's 52:54:00 range, unique per stack and node, so a
    node keeps its static-IP match across re-creates and stacks never collide."""
    digest = hashlib.sha256(f"{prefix}/{name}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


@dataclass(frozen=True)
class Topology:
    stack: str
    prefix: str
    vip: ipaddress.IPv4Address
    cidr: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    nodes: tuple[NodeSpec, ...]

    def by_role(self, role: str) -> tuple[NodeSpec, ...]:
        return tuple(n for n in self.nodes if n.role == role)

    @property
    def load_balancers(self) -> tuple[NodeSpec, ...]:
        return self.by_role("loadBalancer")

    @property
    def etcd(self) -> tuple[NodeSpec, ...]:
        return self.by_role("etcd")

    @property
    def control_planes(self) -> tuple[NodeSpec, ...]:
        return self.by_role("controlPlane")

    @property
    def workers(self) -> tuple[NodeSpec, ...]:
        return self.by_role("workers")

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def etcd_initial_cluster(self) -> str:
        return ",".join(f"{n.name}={n.peer_url}" for n in self.etcd)

    @property
    def etcd_client_endpoints(self) -> tuple[str, ...]:
        return tuple(n.client_url for n in self.etcd)

    def etcd_server_sans(self, node: NodeSpec) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(dns_names, ip_addresses) of a member's client-facing server cert."""
        return (node.name, node.fqdn, "localhost"), (str(node.ip), "127.0.0.1")

    def etcd_peer_sans(self, node: NodeSpec) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(dns_names, ip_addresses) of a member's peer cert: peers dial the IP."""
        return (node.name, node.fqdn), (str(node.ip),)

    def hosts_entries(self) -> tuple[tuple[str, str, str], ...]:
        """(ip, fqdn, name) of every node, for /etc/hosts on each node (the seed's
        exam scenario addresses etcd members by name: https://etcd-01:2379)."""
        return tuple((str(n.ip), n.fqdn, n.name) for n in self.nodes)


def build_topology(*, stack: str, prefix: str, roles: Mapping[str, "RoleSpec"],
                   vip: ipaddress.IPv4Address, cidr: ipaddress.IPv4Network,
                   gateway: ipaddress.IPv4Address, domain: str, problems: "Problems") -> Topology:
    nodes = []
    names: set[str] = set()
    for role in roles.values():
        for i, ip in enumerate(role.ips):
            name = f"{role.prefix}-{i + 1:02d}"
            if name in names:
                problems.add(f"hakube:nodes.{role.role}.namePrefix",
                             f"{role.prefix!r} gives node name {name} that another role already has")
            names.add(name)
            nodes.append(NodeSpec(name=name, role=role.role, ip=ip, mac=derive_mac(prefix, name),
                                  vcpu=role.vcpu, memory_mib=role.memory_mib, disk_gib=role.disk_gib,
                                  domain_name=f"{prefix}-{name}", fqdn=f"{name}.{domain}"))
    macs = [n.mac for n in nodes]
    if len(set(macs)) != len(macs):  # 24 bits of a hash; say so rather than boot twins
        problems.add("hakube:nodes", "two nodes derived the same MAC; rename a namePrefix")
    return Topology(stack=stack, prefix=prefix, vip=vip, cidr=cidr, gateway=gateway,
                    nodes=tuple(nodes))
