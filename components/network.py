"""The stack's libvirt network and base image.

NAT mode: a libvirt network named and bridged per stack, so stacks live side
by side on one host; DHCP is off (nodes get static addresses through
cloud-init) and libvirt's dnsmasq answers DNS for the node domain.
Bridge mode: an existing host bridge, for nodes spread over several hypervisors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_libvirt as libvirt

from config.spec import ImageSpec, LibvirtSpec, NetworkSpec


@dataclass(frozen=True)
class NetworkArgs:
    spec: NetworkSpec
    hosts: tuple[tuple[str, str], ...] = ()     # (fqdn, ip) published in libvirt's DNS


class Network(pulumi.ComponentResource):
    network_id: Optional[pulumi.Output]
    bridge: str

    def __init__(self, name: str, args: NetworkArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hakube:network:Network", name, None, opts)
        spec = args.spec
        self.bridge = spec.bridge
        self.network_id = None
        if spec.mode == "nat":
            net = libvirt.Network(
                f"{name}-net",
                name=spec.network_name,
                mode="nat",
                bridge=spec.bridge,
                addresses=[str(spec.cidr)],
                domain=spec.domain,
                autostart=True,
                dhcp=libvirt.NetworkDhcpArgs(enabled=False),
                dns=libvirt.NetworkDnsArgs(enabled=True, local_only=True, hosts=[
                    libvirt.NetworkDnsHostArgs(hostname=fqdn, ip=ip) for fqdn, ip in args.hosts]),
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.network_id = net.id
        self.register_outputs({"network_id": self.network_id, "bridge": self.bridge})

    def interface(self, mac: str) -> libvirt.DomainNetworkInterfaceArgs:
        if self.network_id is not None:
            return libvirt.DomainNetworkInterfaceArgs(network_id=self.network_id, mac=mac,
                                                      wait_for_lease=False)
        return libvirt.DomainNetworkInterfaceArgs(bridge=self.bridge, mac=mac, wait_for_lease=False)


@dataclass(frozen=True)
class BaseImageArgs:
    spec: ImageSpec
    libvirt: LibvirtSpec


class BaseImage(pulumi.ComponentResource):
    """The cloud image every node's root volume is cloned from (copy-on-write).

    One volume per image, named by a digest of its source: a new image is a
    new volume next to the old one, never a replacement of it. Root volumes
    are overlays whose backing file is their image's volume, so an image
    volume is never deleted by Pulumi (retainOnDelete): when the stack moves
    to another image the old one stays under the nodes not yet rebuilt onto
    the new one, and `make destroy` removes every image volume of the stack
    after `pulumi destroy` (README, "Changes that replace VMs")."""
    volume_id: pulumi.Output

    def __init__(self, name: str, args: BaseImageArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hakube:network:BaseImage", name, None, opts)
        vol = libvirt.Volume(
            f"{name}-volume-{args.spec.digest}",
            name=args.spec.volume_name,
            pool=args.libvirt.pool,
            source=args.spec.source,
            format=args.spec.format,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        self.volume_id = vol.id
        self.register_outputs({"volume_id": self.volume_id})
