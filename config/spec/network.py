"""The libvirt host, the node network, the base image and the admin SSH key."""
from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass

from ..reader import HOSTNAME_LABEL, Section, parse_ipv4, parse_ipv4_network


DEFAULT_IMAGE_URL = ("https://cloud-images.ubuntu.com/releases/noble/release/"
                     "ubuntu-24.04-server-cloudimg-amd64.img")


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


def _bridge_name(stack: str) -> str:
    # Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
    name = f"hk-{stack}"
    if len(name) <= 15:
        return name
    return f"hk-{stack[:6]}-{hashlib.sha256(stack.encode()).hexdigest()[:5]}"


def _nth_host(net: ipaddress.IPv4Network, n: int) -> ipaddress.IPv4Address:
    return net.network_address + n


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
