"""The stack's typed, validated specification.

`load(raw, stack)` turns the raw `hakube:*` config of one stack into a frozen
`Spec`, or raises `ConfigError` listing every problem with its key path.
Nothing here knows about Pulumi resources.
"""
from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from .reader import (HOSTNAME_LABEL, ConfigError, Problems, Section, parse_ipv4,
                     parse_ipv4_network, parse_version)
from . import versions
from .topology import Topology, build_topology

NAMESPACE = "hakube"

# kubeadm's config API by Kubernetes minor (config/versions.py, with sources).
# Minors outside that table are refused rather than guessed.
KUBEADM_API_BY_MINOR = {minor: row[0] for minor, row in versions.KUBERNETES.items()}
SUPPORTED_ETCD_MINORS = tuple(sorted(versions.ETCD_LINES))
END_OF_LIFE_ETCD_MINORS = tuple(m for m, row in sorted(versions.ETCD_LINES.items())
                                if row[0] == "end of life")
# etcd's disaster-recovery guide: bump by 1'000'000'000 "assuming that etcd
# runs with less than 1500 writes per second" (~7.7 days of writes between
# the snapshot and the restore).
DEFAULT_BUMP_REVISION = 1_000_000_000

DEFAULT_IMAGE_URL = ("https://cloud-images.ubuntu.com/releases/noble/release/"
                     "ubuntu-24.04-server-cloudimg-amd64.img")
DEFAULT_ETCD_VERSION = versions.etcd_default()            # the newest with pinned checksums
DEFAULT_KUBERNETES_VERSION = versions.KUBERNETES_DEFAULT
DEFAULT_ETCD_DOWNLOAD = "https://github.com/etcd-io/etcd/releases/download"
DEFAULT_K8S_PACKAGES = "https://pkgs.k8s.io/core:/stable:"
DEFAULT_CIPHERS = (
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
)
CNI_DEFAULT_VERSIONS = {plugin: row[0] for plugin, row in versions.CNI.items()}

SECRET_KEYS = ("sshPrivateKey", "sshPreviousPrivateKey", "etcdOffsiteSecrets")
# The secret options of the off-host backup remote (rclone's names): set with
# `pulumi config set --secret --path 'hakube:etcdOffsiteSecrets.key_pem' ...`.
OFFSITE_SECRET_KEY = "etcdOffsiteSecrets"
# rclone's option names are lower-case words joined by '_' (`rclone help backend sftp`).
RCLONE_OPTION = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


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
class LibvirtSpec:
    uri: str
    pool: str


@dataclass(frozen=True)
class NetworkSpec:
    mode: str                       # "nat": hakube creates the network; "bridge": an existing host bridge
    cidr: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    dns: tuple[str, ...]
    domain: str
    network_name: str               # libvirt network name (nat mode)
    bridge: str                     # bridge device (created by libvirt in nat mode)


@dataclass(frozen=True)
class ImageSpec:
    source: str                     # URL or absolute path on the libvirt host
    format: str
    volume_name: str                # one volume per image: hakube-dev-base-<digest>.qcow2
    package_update: bool            # apt-get update on first boot
    digest: str = ""                # of source and format: names the image's volume and resource
    volume_prefix: str = ""         # every image volume of the stack starts with it


@dataclass(frozen=True)
class SshSpec:
    user: str
    public_key: str | None          # when set, the private key comes from the secret hakube:sshPrivateKey


@dataclass(frozen=True)
class RoleSpec:
    role: str
    count: int
    vcpu: int
    memory_mib: int
    disk_gib: int
    prefix: str
    ips: tuple[ipaddress.IPv4Address, ...]


@dataclass(frozen=True)
class CniSpec:
    plugin: str
    version: str
    # where the CNI's manifest is fetched from ("" = the plugin's release on
    # GitHub): a mirror, or a file served inside an air-gapped network
    manifest_url: str = ""


@dataclass(frozen=True)
class KubernetesSpec:
    version: str
    minor: int
    kubeadm_api: str
    bootstrap: bool
    vip: ipaddress.IPv4Address
    api_port: int
    pod_subnet: ipaddress.IPv4Network
    service_subnet: ipaddress.IPv4Network
    cni: CniSpec
    package_repo: str
    cluster_name: str
    # kubeadm's certificates renewed on each control plane by a timer
    renewal_enabled: bool = True
    renewal_days: int = 60          # renewed when one expires within this many days
    renewal_calendar: str = "Mon *-*-* 03:00:00"
    # Secrets encrypted at rest in etcd (EncryptionConfiguration): the first
    # key encrypts, the others only decrypt (a rotation lists the new one first)
    encryption_enabled: bool = True
    encryption_provider: str = "secretbox"
    encryption_keys: tuple[str, ...] = ("key1",)
    # the apiserver's audit log (off by default: it costs disk and I/O)
    audit_enabled: bool = False
    audit_max_age_days: int = 7
    audit_max_backups: int = 4
    audit_max_size_mb: int = 100
    # where kubeadm pulls the control plane's images from ("" = its default)
    image_repository: str = ""
    # nodes on cgroup v1 may run kubelet: from 1.35 it refuses v1 unless told
    # (failCgroupV1), and kubeadm's SystemVerification fails there
    allow_cgroup_v1: bool = False
    # kube-proxy's conntrack.maxPerCore (None = kube-proxy's default, 32768);
    # 0 leaves the node's nf_conntrack_max as it is, which a node whose
    # kube-proxy may not write it (a container host) needs
    conntrack_max_per_core: Optional[int] = None

    @property
    def endpoint(self) -> str:
        return f"{self.vip}:{self.api_port}"


@dataclass(frozen=True)
class OffsiteSpec:
    """Each verified snapshot also copied off the members, by the member that
    leads the cluster when the snapshot is taken, to an rclone remote (S3,
    SFTP, ... anything rclone speaks). Secret options of the remote come from
    the secret `hakube:etcdOffsiteSecrets`, never from here."""
    remote: tuple[tuple[str, str], ...]     # rclone options of the remote (type, host, user, ...)
    path: str                               # folder on the remote
    retention: int                          # off-host snapshots kept (all members together)
    known_hosts: str = ""                   # sftp: the server's host key(s), pinned

    @property
    def type(self) -> str:
        return dict(self.remote)["type"]


@dataclass(frozen=True)
class BackupSpec:
    """Scheduled `snapshot save` on every etcd member (a systemd timer)."""
    enabled: bool
    calendar: str                   # systemd OnCalendar= expression
    dir: str
    retention: int                  # snapshots kept per member
    offsite: OffsiteSpec | None = None


@dataclass(frozen=True)
class RestoreSpec:
    """Restore every member from one snapshot: a file on the machine running
    Pulumi (`snapshot`), or one in the off-host store (`offsite`, its name
    there), which every member fetches itself."""
    snapshot: str | None            # path as given
    sha256: str                     # of its content: names the restore, runs it once
    bump_revision: int = DEFAULT_BUMP_REVISION    # 0: none (etcdutl --bump-revision/--mark-compacted)
    offsite: str | None = None      # a snapshot's name in etcd.backup.offsite's folder


@dataclass(frozen=True)
class RecoverSpec:
    """Lost quorum: rebuild a one-member cluster from the data of the member
    that survived (`etcd --force-new-cluster`); the other members come back
    by `make rebuild`, each joining as a learner."""
    source: str                     # the surviving member's name


DEFAULT_BACKUP = BackupSpec(enabled=True, calendar="*-*-* 00/6:00:00", dir="/var/backups/etcd", retention=14)


@dataclass(frozen=True)
class MaintenanceSpec:
    """Per-member maintenance timer: defragmentation past a threshold, one
    member at a time (etcd's own lock), and alarms surfaced."""
    enabled: bool
    calendar: str                   # systemd OnCalendar= expression
    defrag_threshold: int           # percent of the db file not in use
    defrag_min_bytes: int           # smaller databases are left alone


DEFAULT_MAINTENANCE = MaintenanceSpec(enabled=True, calendar="*-*-* 03:30:00", defrag_threshold=50,
                                      defrag_min_bytes=100 * 1024**2)


@dataclass(frozen=True)
class TuningSpec:
    """etcd on a node of its own, as its tuning guide says: disk I/O ahead of
    everything else, optionally a CPU priority, and a disk fast enough."""
    io_class: str = "best-effort"     # systemd IOSchedulingClass= (ionice -c2)
    io_priority: int = 0              # IOSchedulingPriority= 0 (highest) .. 7
    nice: int = 0                     # Nice= (0: not set)
    fsync_check: str = "warn"         # before a member first starts: warn | refuse | off
    fsync_limit_ms: int = 10          # etcd's guidance for WAL fsync


@dataclass(frozen=True)
class EtcdSpec:
    version: str
    minor: int
    download_url: str
    sha256: str | None
    arch: str
    cluster_token: str
    heartbeat_interval_ms: int
    election_timeout_ms: int
    quota_backend_bytes: int
    snapshot_count: int
    auto_compaction_mode: str
    auto_compaction_retention: str
    cipher_suites: tuple[str, ...]
    firewall: bool
    backup: BackupSpec = DEFAULT_BACKUP
    restore: RestoreSpec | None = None
    maintenance: MaintenanceSpec = DEFAULT_MAINTENANCE
    recover: RecoverSpec | None = None
    data_dir: str = "/var/lib/etcd"
    tuning: TuningSpec = TuningSpec()

    @property
    def tarball(self) -> str:
        return f"etcd-v{self.version}-linux-{self.arch}.tar.gz"

    @property
    def has_etcdutl(self) -> bool:
        return self.minor >= 5


@dataclass(frozen=True)
class PkiSpec:
    key_algorithm: str              # ECDSA (P-256) or RSA (2048)
    validity_hours: int
    early_renewal_hours: int
    organization: str
    rotation: str | None = None     # a label: changing it re-issues every leaf cert
    check_days: int = 30            # each node's hakube-cert-check fails this many days before an expiry
    check_calendar: str = "daily"   # when it runs (systemd OnCalendar=)


@dataclass(frozen=True)
class MonitoringSpec:
    """Metrics for a Prometheus outside the cluster: etcd's own metrics
    listener and HAProxy's exporter, reachable only from `sources` (none:
    no listener at all)."""
    sources: tuple[str, ...] = ()
    etcd_port: int = 2381
    haproxy_port: int = 8405
    node_port: int = 9479          # hakube's own exporter: backup age, certificate expiry

    @property
    def enabled(self) -> bool:
        return bool(self.sources)


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


def _bridge_name(stack: str) -> str:
    # Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
    name = f"hk-{stack}"
    if len(name) <= 15:
        return name
    return f"hk-{stack[:6]}-{hashlib.sha256(stack.encode()).hexdigest()[:5]}"


def _nth_host(net: ipaddress.IPv4Network, n: int) -> ipaddress.IPv4Address:
    return net.network_address + n


# Roles `make rebuild` may rebuild today. A control plane or worker needs
# drain, `kubectl delete node` and `kubeadm reset`/join around its new VM
# (issue 15); until then their VM keys apply only to nodes created new.
REBUILDABLE_ROLES = ("etcd", "loadBalancer")


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


def _monitoring(s: Section) -> MonitoringSpec:
    sources = s.string_list("sources", []) or []
    for src in sources:
        try:
            ipaddress.IPv4Network(src, strict=False)
        except ValueError:
            s.problems.add(s.key("sources"), f"{src!r} is not an IPv4 address or network (e.g. 192.168.144.1 "
                           "or 10.0.0.0/24: where Prometheus scrapes from)")
    etcd_port = s.integer("etcdMetricsPort", 2381, 1024, 65535)
    haproxy_port = s.integer("haproxyMetricsPort", 8405, 1024, 65535)
    node_port = s.integer("nodeMetricsPort", 9479, 1024, 65535)
    ports = (("etcdMetricsPort", etcd_port), ("haproxyMetricsPort", haproxy_port), ("nodeMetricsPort", node_port))
    for key, port in ports:
        if port in (2379, 2380, 6443, 10250, 10257, 10259):
            s.problems.add(s.key(key), f"{port} is already taken by etcd or Kubernetes")
    if isinstance(node_port, int) and node_port in (etcd_port, haproxy_port):
        s.problems.add(s.key("nodeMetricsPort"), f"{node_port} is already the etcd or HAProxy metrics port")
    s.finish()
    return MonitoringSpec(sources=tuple(sources), etcd_port=etcd_port, haproxy_port=haproxy_port,
                          node_port=node_port)


def _libvirt(s: Section) -> LibvirtSpec:
    uri = s.string("uri", "qemu:///system")
    if isinstance(uri, str) and not re.match(r"^qemu(\+\w+)?://", uri):
        s.problems.add(s.key("uri"), f"{uri!r} is not a QEMU/KVM libvirt URI "
                       "(e.g. qemu:///system or qemu+ssh://user@host/system)")
    pool = s.string("pool", "default")
    s.finish()
    return LibvirtSpec(uri=uri, pool=pool)


def _network(s: Section, stack: str, project: str) -> NetworkSpec:
    mode = s.choice("mode", "nat", ("nat", "bridge"))
    if not s.has("cidr"):
        s.problems.add(s.key("cidr"), "required: the node subnet of this stack, e.g. "
                       "192.168.144.0/24 (pick one no other stack or LAN uses)")
    cidr = s.converted("cidr", None, parse_ipv4_network, "an IPv4 network in CIDR form")
    if cidr is not None and cidr.num_addresses < 256:
        s.problems.add(s.key("cidr"), f"{cidr} is smaller than a /24; node addresses are "
                       "derived as .91, .100, .101, .151 and .201 of the subnet")
        cidr = None
    gateway = s.converted("gateway", None, parse_ipv4, "an IPv4 address")
    if cidr is not None:
        if gateway is None:
            gateway = _nth_host(cidr, 1)
        elif gateway not in cidr:
            s.problems.add(s.key("gateway"), f"{gateway} is outside {s.key('cidr')} {cidr}")
    dns = s.string_list("dns", None)
    domain = s.string("domain", "hakube.internal")
    if isinstance(domain, str) and not all(HOSTNAME_LABEL.match(p) for p in domain.split(".")):
        s.problems.add(s.key("domain"), f"{domain!r} is not a valid DNS domain")
    bridge = s.string("bridge", None)
    if mode == "bridge" and not bridge:
        s.problems.add(s.key("bridge"), "required when mode is bridge: the name of an existing "
                       "host bridge (e.g. br0)")
    if mode == "nat" and bridge:
        s.problems.add(s.key("bridge"), "only for mode: bridge; in nat mode hakube names the "
                       "bridge itself so that stacks never collide")
    if bridge and (len(bridge) > 15 or not re.match(r"^[A-Za-z0-9_.-]+$", bridge)):
        s.problems.add(s.key("bridge"), f"{bridge!r} is not a Linux interface name (max 15 chars)")
    s.finish()
    return NetworkSpec(mode=mode, cidr=cidr, gateway=gateway,
                       dns=tuple(dns) if dns else ((str(gateway),) if gateway else ()),
                       domain=domain, network_name=f"{project}-{stack}",
                       bridge=bridge or _bridge_name(stack))


def _image(root: Section, stack: str, project: str) -> ImageSpec:
    present = root.has("image")
    s = root.section("image")
    url = s.string("url", None)
    path = s.string("path", None)
    fmt = s.choice("format", "qcow2", ("qcow2", "raw"))
    package_update = s.boolean("packageUpdate", True)
    if url and path:
        s.problems.add(s.path, "set either url or path, not both")
    elif present and not url and not path:
        s.problems.add(s.path, "no image source: set url (an http(s) cloud image) or path "
                       "(an absolute path on the libvirt host), or remove the key for the "
                       "default Ubuntu 24.04 cloud image")
    if url and not re.match(r"^https?://\S+$", url):
        s.problems.add(s.key("url"), f"{url!r} is not an http(s) URL")
    if path and not path.startswith("/"):
        s.problems.add(s.key("path"), f"{path!r} must be an absolute path on the libvirt host")
    s.finish()
    source = path or url or DEFAULT_IMAGE_URL
    digest = hashlib.sha256(f"{source}\0{fmt}".encode()).hexdigest()[:10]
    prefix = f"{project}-{stack}-base"      # also the name before image volumes had a digest
    return ImageSpec(source=source, format=fmt, volume_name=f"{prefix}-{digest}.{fmt}",
                     package_update=package_update, digest=digest, volume_prefix=prefix)


def _ssh(s: Section) -> SshSpec:
    user = s.string("user", "hakube")
    if isinstance(user, str) and (not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", user) or user == "root"):
        s.problems.add(s.key("user"), f"{user!r} is not a valid non-root login name")
    public_key = s.string("publicKey", None)
    if public_key and not re.match(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+", public_key):
        s.problems.add(s.key("publicKey"), "expected an OpenSSH public key line (ssh-ed25519 AAAA...)")
    s.finish()
    return SshSpec(user=user, public_key=public_key)


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


# A registry host (DNS name or IPv4, optional port) and an optional path, as
# an image reference starts: what kubeadm prefixes to each image's name.
IMAGE_REPOSITORY = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9._-]+)*/?$")


def _kubernetes(s: Section, network: NetworkSpec, stack: str) -> KubernetesSpec:
    version = s.string("version", DEFAULT_KUBERNETES_VERSION)
    minor, api = 0, "v1beta4"
    try:
        major, minor, _ = parse_version(version)
        api = KUBEADM_API_BY_MINOR.get(minor) if major == 1 else None
        if api is None:
            lo, hi = min(KUBEADM_API_BY_MINOR), max(KUBEADM_API_BY_MINOR)
            s.problems.add(s.key("version"), f"{version}: hakube renders kubeadm's config API for "
                           f"Kubernetes 1.{lo} to 1.{hi} only ("
                           + ", ".join(f"1.{m}" for m in sorted(KUBEADM_API_BY_MINOR))
                           + "; config/versions.py)")
            api = "v1beta4"
    except (ValueError, TypeError) as exc:
        s.problems.add(s.key("version"), f"{version!r} is not a version ({exc})")
    version = str(version).lstrip("v")
    bootstrap = s.boolean("bootstrap", True)
    vip = s.converted("vip", None, parse_ipv4, "an IPv4 address")
    if vip is None and network.cidr is not None:
        vip = _nth_host(network.cidr, 100)
    api_port = s.integer("apiServerPort", 6443, 1, 65535)
    pod = s.converted("podSubnet", ipaddress.IPv4Network("10.244.0.0/16"), parse_ipv4_network,
                      "an IPv4 network in CIDR form")
    svc = s.converted("serviceSubnet", ipaddress.IPv4Network("10.96.0.0/12"), parse_ipv4_network,
                      "an IPv4 network in CIDR form")
    for key, net in (("podSubnet", pod), ("serviceSubnet", svc)):
        if network.cidr is not None and net.overlaps(network.cidr):
            s.problems.add(s.key(key), f"{net} overlaps the node network {network.cidr}")
    if pod.overlaps(svc):
        s.problems.add(s.key("serviceSubnet"), f"{svc} overlaps {s.key('podSubnet')} {pod}")
    c = s.section("cni")
    plugin = c.choice("plugin", "calico", tuple(CNI_DEFAULT_VERSIONS))
    cni_version = c.string("version", CNI_DEFAULT_VERSIONS.get(plugin))
    try:
        parse_version(cni_version)
    except (ValueError, TypeError) as exc:
        c.problems.add(c.key("version"), f"{cni_version!r} is not a version ({exc})")
    manifest = c.string("manifestUrl", "")
    if isinstance(manifest, str) and manifest and not re.match(r"^https?://\S+$", manifest):
        c.problems.add(c.key("manifestUrl"), f"{manifest!r} is not an http(s) URL")
    c.finish()
    r = s.section("certRenewal")
    renewal_enabled = r.boolean("enabled", True)
    # weekly by default: 60 days leaves eight runs before an expiry, and the
    # renewal comes a month before hakube-cert-check's default warning (30)
    renewal_days = r.integer("days", 60, 7, 300)
    renewal_calendar = _calendar(r, "Mon *-*-* 03:00:00")
    r.finish()
    e = s.section("encryption")
    encryption_enabled = e.boolean("enabled", True)
    # secretbox (XSalsa20-Poly1305) first: kubernetes.io calls aescbc weak to
    # padding oracle attacks; kms needs a plugin hakube does not run
    encryption_provider = e.choice("provider", "secretbox", ("secretbox", "aescbc"))
    keys = e.string_list("keys", ["key1"]) or []
    if not 1 <= len(keys) <= 4:
        e.problems.add(e.key("keys"), f"list 1 to 4 key names, the active one first; got {len(keys)}")
    for key in keys:
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?", key):
            e.problems.add(e.key("keys"), f"{key!r} is not a key name (lowercase letters, digits and '-', "
                           "at most 32)")
    if len(set(keys)) != len(keys):
        e.problems.add(e.key("keys"), f"names a key twice: {keys}")
    e.finish()
    a = s.section("audit")
    audit_enabled = a.boolean("enabled", False)
    audit_age = a.integer("maxAgeDays", 7, 1, 3650)
    audit_backups = a.integer("maxBackups", 4, 0, 1000)
    audit_size = a.integer("maxSizeMB", 100, 1, 100000)
    a.finish()
    repo = s.string("packageRepository", DEFAULT_K8S_PACKAGES)
    if isinstance(repo, str) and not re.match(r"^https?://\S+$", repo):
        s.problems.add(s.key("packageRepository"), f"{repo!r} is not an http(s) URL")
    images = s.string("imageRepository", "")
    if isinstance(images, str) and images and not IMAGE_REPOSITORY.match(images):
        s.problems.add(s.key("imageRepository"),
                       f"{images!r} is not an image repository: a registry host (and port) with an optional "
                       "path, no scheme, e.g. registry.example.internal:5000/k8s")
    allow_cgroup_v1 = s.boolean("allowCgroupV1", False)
    kp = s.section("kubeProxy")
    # kube-proxy's own bound (int32); 0 = leave nf_conntrack_max alone
    conntrack = kp.integer("conntrackMaxPerCore", None, 0, 2**31 - 1)
    kp.finish()
    s.finish()
    return KubernetesSpec(version=version, minor=minor, kubeadm_api=api, bootstrap=bootstrap,
                          vip=vip, api_port=api_port, pod_subnet=pod, service_subnet=svc,
                          cni=CniSpec(plugin, str(cni_version).lstrip("v"),
                                      manifest.strip() if isinstance(manifest, str) else ""),
                          package_repo=repo.rstrip("/"), cluster_name=f"hakube-{stack}",
                          renewal_enabled=renewal_enabled, renewal_days=renewal_days,
                          renewal_calendar=renewal_calendar, encryption_enabled=encryption_enabled,
                          encryption_provider=encryption_provider, encryption_keys=tuple(keys) or ("key1",),
                          audit_enabled=audit_enabled, audit_max_age_days=audit_age,
                          audit_max_backups=audit_backups, audit_max_size_mb=audit_size,
                          image_repository=images.rstrip("/") if isinstance(images, str) else "",
                          allow_cgroup_v1=bool(allow_cgroup_v1),
                          conntrack_max_per_core=conntrack if isinstance(conntrack, int) else None)


def _etcd(s: Section, stack: str) -> EtcdSpec:
    version = s.string("version", DEFAULT_ETCD_VERSION)
    allow_eol = s.boolean("allowEndOfLife", False)
    minor = 6
    try:
        major, minor, _ = parse_version(version)
        if major != 3 or minor not in SUPPORTED_ETCD_MINORS:
            s.problems.add(s.key("version"), f"{version}: supported etcd releases are "
                           + ", ".join(f"3.{m}.x" for m in SUPPORTED_ETCD_MINORS)
                           + " (config/versions.py; `make versions`)")
        elif minor in END_OF_LIFE_ETCD_MINORS and allow_eol is not True:
            s.problems.add(s.key("version"), f"{version}: etcd 3.{minor} is end of life. A cluster that "
                           f"runs it is upgraded in place, one member at a time: set 3.{minor + 1}.x "
                           f"(e.g. {versions.newest_pinned(minor + 1) or f'3.{minor + 1}.x'}). To keep running 3.{minor} until then, "
                           "set hakube:etcd.allowEndOfLife: true")
    except (ValueError, TypeError) as exc:
        s.problems.add(s.key("version"), f"{version!r} is not a version ({exc})")
    url = s.string("downloadUrl", DEFAULT_ETCD_DOWNLOAD)
    if isinstance(url, str) and not re.match(r"^https?://\S+$", url):
        s.problems.add(s.key("downloadUrl"), f"{url!r} is not an http(s) URL")
    sha = s.string("sha256", None)
    if sha is not None and not re.match(r"^[0-9a-f]{64}$", sha):
        s.problems.add(s.key("sha256"), "expected 64 lower-case hex digits (the tarball's sha256)")
    arch = s.choice("arch", "amd64", ("amd64", "arm64"))
    if sha is None and isinstance(version, str):
        # the release's sha256 pinned in hakube (from its own source, not a
        # SHA256SUMS fetched at run time), when hakube has a row for it
        sha = versions.etcd_sha256(version.lstrip("v"), arch)
    token = s.string("clusterToken", f"hakube-{stack}")
    heartbeat = s.integer("heartbeatIntervalMs", 100, 10, 5000)
    election = s.integer("electionTimeoutMs", 1000, 50, 50000)
    if isinstance(heartbeat, int) and isinstance(election, int) and election < 5 * heartbeat:
        s.problems.add(s.key("electionTimeoutMs"), f"{election} must be at least 5x "
                       f"heartbeatIntervalMs ({heartbeat}); etcd refuses to start otherwise "
                       "(10x is recommended)")
    quota = s.integer("quotaBackendBytes", 2 * 1024**3, 64 * 1024**2, 8 * 1024**3)
    snapshot = s.integer("snapshotCount", 10000, 100, 10_000_000)
    mode = s.choice("autoCompactionMode", "periodic", ("periodic", "revision"))
    retention = s.string("autoCompactionRetention", "1h" if mode == "periodic" else "10000")
    pattern = r"^\d+(h|m|s)?$" if mode == "periodic" else r"^\d+$"
    if isinstance(retention, str) and not re.match(pattern, retention):
        s.problems.add(s.key("autoCompactionRetention"), f"{retention!r} does not fit mode {mode} "
                       "(periodic: a duration such as 1h or 30m; revision: a count)")
    ciphers = s.string_list("cipherSuites", list(DEFAULT_CIPHERS))
    firewall = s.boolean("firewall", True)
    backup = _backup(s.section("backup"))
    maintenance = _maintenance(s.section("maintenance"))
    restore = _restore(s.section("restore"), backup.offsite) if s.has("restore") else None
    recover = _recover(s.section("recover")) if s.has("recover") else None
    if restore and recover:
        s.problems.add(s.key("recover"), "a restore and a recovery in the same run: recover (from a "
                       "surviving member) or restore (from a snapshot), and remove the other key")
    tuning = _tuning(s.section("tuning"))
    s.finish()
    return EtcdSpec(version=str(version).lstrip("v"), minor=minor, download_url=str(url).rstrip("/"),
                    sha256=sha, arch=arch, cluster_token=token, heartbeat_interval_ms=heartbeat,
                    election_timeout_ms=election, quota_backend_bytes=quota, snapshot_count=snapshot,
                    auto_compaction_mode=mode, auto_compaction_retention=retention,
                    cipher_suites=tuple(ciphers), firewall=firewall, backup=backup, restore=restore,
                    maintenance=maintenance, tuning=tuning, recover=recover)


def _tuning(s: Section) -> TuningSpec:
    d = TuningSpec()
    io_class = s.choice("ioClass", d.io_class, ("best-effort", "realtime", "idle"))
    io_priority = s.integer("ioPriority", d.io_priority, 0, 7)
    nice = s.integer("nice", d.nice, -20, 19)
    check = s.choice("fsyncCheck", d.fsync_check, ("warn", "refuse", "off"))
    limit = s.integer("fsyncLimitMs", d.fsync_limit_ms, 1, 1000)
    s.finish()
    return TuningSpec(io_class=io_class, io_priority=io_priority, nice=nice, fsync_check=check,
                      fsync_limit_ms=limit)


def _restore(s: Section, offsite: "OffsiteSpec | None") -> RestoreSpec | None:
    path = s.string("snapshot", None)
    name = s.string("offsite", None)
    pinned = s.string("sha256", None)
    bump = s.integer("bumpRevision", DEFAULT_BUMP_REVISION, 0, 2**62)
    s.finish()
    bump = bump if isinstance(bump, int) else DEFAULT_BUMP_REVISION
    if path and name:
        s.problems.add(s.key("offsite"), "name one snapshot: a file on this machine (snapshot) or one "
                       "in the off-host store (offsite), not both")
        return None
    if name:
        if offsite is None:
            s.problems.add(s.key("offsite"), "restoring from the off-host store needs "
                           "hakube:etcd.backup.offsite (the remote it is in)")
        if not re.match(r"^etcd-[A-Za-z0-9.-]+-\d{8}T\d{6}Z\.db$", name):
            s.problems.add(s.key("offsite"), f"{name!r} is not the name of an off-host snapshot "
                           "(etcd-<member>-<UTC time>.db, as `make backups` lists them)")
        if not isinstance(pinned, str) or not re.match(r"^[0-9a-f]{64}$", pinned):
            s.problems.add(s.key("sha256"), "required with offsite: the snapshot's sha256 (64 hex "
                           "digits), from `make backups` or the .sha256 file next to it; it names "
                           "exactly what is restored, and every member checks its copy against it")
            return None
        return RestoreSpec(snapshot=None, offsite=name, sha256=pinned, bump_revision=bump)
    if not path:
        s.problems.add(s.key("snapshot"), "required: a snapshot file on this machine, e.g. one copied "
                       "from a member's backup dir (scp etcd-01:/var/backups/etcd/latest.db .), or "
                       "offsite: <name> for one in the off-host store")
        return None
    try:
        digest = hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()
    except OSError as exc:
        s.problems.add(s.key("snapshot"), f"cannot read {path!r} ({exc.strerror}); the file is read "
                       "on the machine that runs pulumi")
        return None
    if pinned is not None and pinned != digest:
        s.problems.add(s.key("sha256"), f"{path} has sha256 {digest}, not {pinned}: not restoring it")
        return None
    return RestoreSpec(snapshot=str(Path(path).expanduser()), sha256=digest, bump_revision=bump)


def _recover(s: Section) -> RecoverSpec | None:
    source = s.string("from", None)
    s.finish()
    if not isinstance(source, str) or not source:
        s.problems.add(s.key("from"), "required: the member whose data survived (e.g. etcd-01); "
                       "see README 'Lost quorum'")
        return None
    return RecoverSpec(source=source)


def _offsite(s: Section) -> OffsiteSpec | None:
    before = len(s.problems.items)
    remote = s._get("remote", None)
    path = s.string("path", None)
    retention = s.integer("retention", 28, 1, 100_000)
    known_hosts = s.string("knownHosts", "")
    s.finish()
    options: list[tuple[str, str]] = []
    if not isinstance(remote, dict) or not remote.get("type"):
        s.problems.add(s.key("remote"), "required: the rclone remote's options, as `rclone config` "
                       "writes them, e.g. {type: sftp, host: backup.example, user: etcd} or {type: s3, "
                       "provider: AWS, region: eu-west-1, access_key_id: ...}; its secret options go in "
                       f"the secret hakube:{OFFSITE_SECRET_KEY}")
        return None
    for key, value in sorted(remote.items()):
        if not isinstance(key, str) or not RCLONE_OPTION.match(key):
            s.problems.add(s.key("remote"), f"{key!r} is not an rclone option name (lower-case, '_')")
        elif isinstance(value, bool):
            options.append((key, "true" if value else "false"))
        elif not isinstance(value, (str, int)) or "\n" in str(value) or str(value) != str(value).strip():
            s.problems.add(s.key(f"remote.{key}"), "expected one line of text or a number")
        elif key in OFFSITE_SECRET_OPTIONS:
            s.problems.add(s.key(f"remote.{key}"), f"a secret in plain stack config: move it to the secret "
                           f"hakube:{OFFSITE_SECRET_KEY} (pulumi config set --secret --path "
                           f"'hakube:{OFFSITE_SECRET_KEY}.{key}' ...)")
        else:
            options.append((key, str(value)))
    if not isinstance(path, str) or not re.match(r"^[A-Za-z0-9._/-]+$", path) or ".." in path.split("/"):
        s.problems.add(s.key("path"), f"{path!r}: required, the folder on the remote for this stack's "
                       "snapshots (letters, digits, . _ - /), e.g. etcd/prod")
    kind = dict(options).get("type", "")
    if kind == "sftp" and not (isinstance(known_hosts, str) and known_hosts.strip()):
        s.problems.add(s.key("knownHosts"), "required for sftp: the server's host key line(s), pinned "
                       "(ssh-keyscan -t ed25519 <host>); a snapshot holds every Secret of the cluster")
    if isinstance(known_hosts, str) and known_hosts.strip():
        for line in known_hosts.strip().splitlines():
            if len(line.split()) < 3:
                s.problems.add(s.key("knownHosts"), f"{line!r} is not a known_hosts line "
                               "(<host> <key type> <base64 key>)")
    if len(s.problems.items) > before:
        return None
    return OffsiteSpec(remote=tuple(options), path=path.strip("/"), retention=retention,
                       known_hosts=known_hosts.strip() + "\n" if known_hosts.strip() else "")


# rclone options that are credentials (`rclone help backend <type>`: those
# rclone's own config marks as sensitive); refused in plain stack config.
OFFSITE_SECRET_OPTIONS = ("pass", "key_pem", "key_file_pass", "secret_access_key", "session_token",
                          "account_key", "sas_url", "client_secret", "token", "password", "key",
                          "service_account_credentials", "application_key", "api_key")


def offsite_secrets(value: Any) -> tuple[dict[str, str], list[str]]:
    """The secret options of the off-host remote (hakube:etcdOffsiteSecrets),
    checked; returns (options, problems). key_pem is the one multi-line
    value: rclone reads it with its line ends written as \\n."""
    problems: list[str] = []
    if value is None:
        return {}, problems
    if not isinstance(value, dict):
        return {}, [f"hakube:{OFFSITE_SECRET_KEY}: expected an object of rclone options (e.g. "
                    "{\"key_pem\": \"...\"}), got " + type(value).__name__]
    out: dict[str, str] = {}
    for key, item in sorted(value.items()):
        where = f"hakube:{OFFSITE_SECRET_KEY}.{key}"
        if not isinstance(key, str) or not RCLONE_OPTION.match(key):
            problems.append(f"{where}: not an rclone option name (lower-case, '_')")
        elif not isinstance(item, str) or not item.strip():
            problems.append(f"{where}: expected text")
        elif key == "key_pem":
            out[key] = item.strip().replace("\n", "\\n")
        elif "\n" in item:
            problems.append(f"{where}: one line expected (only key_pem may hold several)")
        else:
            out[key] = item
    return out, problems


def _calendar(s: Section, default: str) -> str:
    calendar = s.string("calendar", default)
    # The members' own `systemd-analyze calendar` judges the expression; here
    # only what would break the unit file itself.
    if isinstance(calendar, str) and (not calendar.strip() or "\n" in calendar or "%" in calendar):
        s.problems.add(s.key("calendar"), f"{calendar!r} is not a systemd calendar expression "
                       "(e.g. daily, hourly, *-*-* 00/6:00:00; see man systemd.time)")
    return calendar


def _maintenance(s: Section) -> MaintenanceSpec:
    d = DEFAULT_MAINTENANCE
    enabled = s.boolean("enabled", d.enabled)
    calendar = _calendar(s, d.calendar)
    threshold = s.integer("defragThreshold", d.defrag_threshold, 1, 99)
    min_bytes = s.integer("defragMinBytes", d.defrag_min_bytes, 0, 64 * 1024**3)
    s.finish()
    return MaintenanceSpec(enabled=enabled, calendar=calendar, defrag_threshold=threshold,
                           defrag_min_bytes=min_bytes)


def _backup(s: Section) -> BackupSpec:
    d = DEFAULT_BACKUP
    enabled = s.boolean("enabled", d.enabled)
    calendar = _calendar(s, d.calendar)
    directory = s.string("dir", d.dir)
    if isinstance(directory, str) and (not re.match(r"^/[A-Za-z0-9._/-]*$", directory) or directory.rstrip("/") in
                                       ("", "/var/lib/etcd") or ".." in directory):
        s.problems.add(s.key("dir"), f"{directory!r} must be an absolute path of its own "
                       "(not / and not etcd's data dir)")
    retention = s.integer("retention", d.retention, 1, 1000)
    offsite = _offsite(s.section("offsite")) if s.has("offsite") else None
    s.finish()
    if offsite and not enabled:
        s.problems.add(s.key("offsite"), "copies the scheduled snapshots off-host: it needs "
                       "etcd.backup.enabled true")
    return BackupSpec(enabled=enabled, calendar=calendar, dir=str(directory).rstrip("/"), retention=retention,
                      offsite=offsite)


def _pki(s: Section) -> PkiSpec:
    algorithm = s.choice("keyAlgorithm", "ECDSA", ("ECDSA", "RSA"))
    validity = s.integer("validityHours", 8760, 24, 20 * 8760)
    renewal = s.integer("earlyRenewalHours", 720, 0, 20 * 8760)
    if isinstance(validity, int) and isinstance(renewal, int) and renewal >= validity:
        s.problems.add(s.key("earlyRenewalHours"), f"{renewal} must be less than validityHours "
                       f"({validity}), or every `pulumi up` would re-issue the certificates")
    check = s.section("check")
    # By default the check fails when `pulumi up` would re-issue (the early
    # renewal window): a stack nobody touches is told a month ahead.
    check_days = check.integer("days", max(1, renewal // 24) if isinstance(renewal, int) else 30, 1, 3650)
    check_calendar = _calendar(check, "daily")
    check.finish()
    org = s.string("organization", "hakube")
    rotation = s.string("rotation", None)
    if rotation is not None and not re.match(r"^[A-Za-z0-9._-]{1,64}$", str(rotation)):
        s.problems.add(s.key("rotation"), f"{rotation!r}: use a short label such as 2026-11 "
                       "(letters, digits, . _ -); changing it re-issues every leaf certificate")
    s.finish()
    return PkiSpec(key_algorithm=algorithm, validity_hours=validity,
                   early_renewal_hours=renewal, organization=org, rotation=rotation,
                   check_days=check_days, check_calendar=check_calendar)


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


__all__ = ["ConfigError", "Spec", "load", "ROLES", "NAMESPACE"]
