"""The node roles: counts, addresses and VM shapes."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..reader import HOSTNAME_LABEL, Section, parse_ipv4
from .network import NetworkSpec, _nth_host


@dataclass(frozen=True)
class RoleDefaults:
    count: int
    vcpu: int
    memory_mib: int
    disk_gib: int
    prefix: str
    first_host: int          # host number of the first node in the subnet (.101 ...)
    min_count: int
    max_count: int
    min_vcpu: int = 1
    min_memory_mib: int = 512
    why_minimum: str = ""


ROLES: dict[str, RoleDefaults] = {
    # Seed: VIP .100, control planes .101+, etcd .201+. Load balancers sit just
    # below the VIP and workers between the two blocks.
    "loadBalancer": RoleDefaults(1, 1, 1024, 10, "lb", 91, 1, 2),
    "etcd": RoleDefaults(3, 2, 2048, 20, "etcd", 201, 1, 7),
    # kubeadm's preflight refuses fewer than 2 CPUs and 1700 MB of memory.
    "controlPlane": RoleDefaults(3, 2, 4096, 30, "master", 101, 1, 9, min_vcpu=2, min_memory_mib=1700,
                                  why_minimum="kubeadm's preflight minimum"),
    "workers": RoleDefaults(0, 2, 2048, 30, "worker", 151, 0, 40),
}


@dataclass(frozen=True)
class RoleSpec:
    role: str
    count: int
    vcpu: int
    memory_mib: int
    disk_gib: int
    prefix: str
    ips: tuple[ipaddress.IPv4Address, ...]


# Roles `make rebuild` may rebuild today. A control plane or worker needs
# drain, `kubectl delete node` and `kubeadm reset`/join around its new VM
# (issue 15); until then their VM keys apply only to nodes created new.
REBUILDABLE_ROLES = ("etcd", "loadBalancer")


def _roles(s: Section, network: NetworkSpec) -> dict[str, RoleSpec]:
    roles = {}
    for role, d in ROLES.items():
        r = s.section(role)
        count = r.integer("count", d.count, d.min_count, d.max_count)
        if role == "etcd" and isinstance(count, int) and count % 2 == 0:
            r.problems.add(r.key("count"), f"{count} members tolerate no more failures than "
                           f"{count - 1}; use an odd count (1, 3, 5 or 7)")
        why = d.why_minimum
        vcpu = r.integer("vcpu", d.vcpu, d.min_vcpu, 64, why)
        memory = r.integer("memoryMiB", d.memory_mib, d.min_memory_mib, 1 << 20, why)
        disk = r.integer("diskGiB", d.disk_gib, 8, 4096)
        prefix = r.string("namePrefix", d.prefix)
        if isinstance(prefix, str) and not HOSTNAME_LABEL.match(prefix):
            r.problems.add(r.key("namePrefix"), f"{prefix!r} is not a valid hostname label "
                           "(lower-case letters, digits, '-')")
        explicit = r.string_list("ips", None)
        ips: list[ipaddress.IPv4Address] = []
        if explicit is not None:
            if isinstance(count, int) and len(explicit) != count:
                r.problems.add(r.key("ips"), f"lists {len(explicit)} addresses for count {count}")
            for i, text in enumerate(explicit):
                try:
                    ips.append(parse_ipv4(text))
                except ValueError as exc:
                    r.problems.add(f"{r.key('ips')}[{i}]", f"{text!r} is not an IPv4 address ({exc})")
        elif network.cidr is not None and isinstance(count, int):
            ips = [_nth_host(network.cidr, d.first_host + i) for i in range(count)]
        r.finish()
        roles[role] = RoleSpec(role=role, count=count, vcpu=vcpu, memory_mib=memory,
                               disk_gib=disk, prefix=prefix, ips=tuple(ips))
    s.finish()
    return roles
