"""Kubernetes: version, VIP, subnets, CNI, encryption, audit, package and image sources."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Optional

from .. import versions
from ..reader import Section, parse_ipv4, parse_ipv4_network, parse_version, systemd_calendar
from .network import NetworkSpec, _nth_host


DEFAULT_K8S_PACKAGES = "https://pkgs.k8s.io/core:/stable:"


# kubeadm's config API by Kubernetes minor (config/versions.py, with sources).
# Minors outside that table are refused rather than guessed.
KUBEADM_API_BY_MINOR = {minor: row[0] for minor, row in versions.KUBERNETES.items()}


DEFAULT_KUBERNETES_VERSION = versions.KUBERNETES_DEFAULT


CNI_DEFAULT_VERSIONS = {plugin: row[0] for plugin, row in versions.CNI.items()}


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
    renewal_calendar = systemd_calendar(r, "Mon *-*-* 03:00:00")
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
