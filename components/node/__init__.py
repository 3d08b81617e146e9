"""One VM: a root volume cloned from the base image, a cloud-init disk, the
libvirt domain, and the node's first steps over SSH: a readiness gate that
waits for cloud-init, the admin key, hakube's helpers (and the machine id),
and /etc/hosts.

The node's SSH host key is generated here and pinned in `connection`, which
every later step on this node uses.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pulumi
import pulumi_libvirt as libvirt
import pulumi_tls as tls
from pulumi_command import remote

from config.spec import Spec
from config.topology import NodeSpec

from .. import cloudinit, steps
from ..network import BaseImage, Network
from ..pki import PRIVATE_OUTPUTS
from ..remote import SshAccess, render, step

HERE = Path(__file__).parent
GIB = 1024 ** 3


@dataclass(frozen=True)
class NodeArgs:
    spec: Spec
    node: NodeSpec
    network: Network
    image: BaseImage
    ssh: SshAccess


class Node(pulumi.ComponentResource):
    name: str
    ip: str
    connection: remote.ConnectionArgs
    booted: remote.Command          # the cloud-init gate
    admin_key: remote.Command       # the admin's authorized key, as the stack says
    ready: remote.Command           # booted, helpers installed, /etc/hosts written: what steps wait for
    host_public_key: pulumi.Output
    domain: libvirt.Domain

    def __init__(self, name: str, args: NodeArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("hakube:node:Node", name, None, opts)
        node = args.node
        self.name, self.ip, self.role = node.name, str(node.ip), node.role
        host_key = tls.PrivateKey(f"{name}-hostkey", algorithm="ED25519", opts=pulumi.ResourceOptions(
            parent=self, additional_secret_outputs=PRIVATE_OUTPUTS))
        # tls gives "ssh-ed25519 AAAA...\n"; host_key wants the bare key line.
        self.host_public_key = host_key.public_key_openssh.apply(str.strip)
        self._domain(name, args, *self._disks(name, args, host_key))
        self._first_steps(name, args)
        self.register_outputs({"ip": self.ip, "host_public_key": self.host_public_key})

    def _disks(self, name: str, args: NodeArgs,
               host_key: tls.PrivateKey) -> tuple[libvirt.Volume, libvirt.CloudInitDisk]:
        """The VM's root volume and its cloud-init disk."""
        spec, node = args.spec, args.node
        # A new machine accepts the stack's admin key and, during a key
        # rotation, the previous one too (the one running nodes accept).
        user_data = pulumi.Output.secret(pulumi.Output.all(
            host_key.private_key_openssh, self.host_public_key, *args.ssh.authorized_keys(),
        ).apply(lambda v: cloudinit.user_data(spec, node, authorized_keys=[k.strip() for k in v[2:]],
                                              host_key_private=v[0], host_key_public=v[1])))
        # A VM's shape (disk size, image, pool, vCPUs, memory) is fixed when
        # it is created: libvirt replaces a volume or domain to change it,
        # delete-before-replace for every node of a role at once (an etcd
        # member's data with it). Edits reach a node only when it is rebuilt
        # on its own (`make rebuild NODE=...`); `pendingRebuilds` says which.
        rebuilding = spec.rebuild == node.name
        root = libvirt.Volume(
            f"{name}-root",
            name=f"{node.domain_name}.qcow2",
            pool=spec.libvirt.pool,
            base_volume_id=args.image.volume_id,
            format="qcow2",
            size=node.disk_gib * GIB,
            # delete-before-replace also for a bare `pulumi up --replace` of it
            # (`make rebuild` with no key changed): with no diff the provider
            # does not ask for it, and a new volume of the same name would
            # collide with the old one; its domain, whose disk it is, is
            # replaced with it (ENGINE.md).
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True, ignore_changes=None if rebuilding else [
                "size", "base_volume_id", "pool", "format"]),
        )
        self.root = root
        # cloud-init reads its disk once, at a machine's first boot: a new
        # payload would replace the disk of every node (delete-before-replace)
        # and be swapped into running VMs that never read it. It reaches a
        # node when the node is rebuilt; what running nodes must learn
        # (names, the VIP, a new admin key) they learn from steps.
        seed = libvirt.CloudInitDisk(
            f"{name}-cloudinit",
            name=f"{node.domain_name}-cloudinit.iso",
            pool=spec.libvirt.pool,
            user_data=user_data,
            network_config=cloudinit.network_config(spec, node),
            meta_data=cloudinit.meta_data(node),
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=None if rebuilding else [
                "user_data", "network_config", "meta_data", "pool"]),
        )
        return root, seed

    def _domain(self, name: str, args: NodeArgs, root: libvirt.Volume, seed: libvirt.CloudInitDisk) -> None:
        """The VM on those disks, and what of its shape waits for a rebuild (`pending`)."""
        spec, node = args.spec, args.node
        rebuilding = spec.rebuild == node.name
        self.domain = libvirt.Domain(
            f"{name}-domain",
            name=node.domain_name,
            description=f"hakube {spec.stack} {node.role} {node.name}",
            vcpu=node.vcpu,
            memory=node.memory_mib,
            autostart=True,
            cpu=libvirt.DomainCpuArgs(mode="host-passthrough"),
            cloudinit=seed.id,
            disks=[libvirt.DomainDiskArgs(volume_id=root.id)],
            network_interfaces=[args.network.interface(node.mac)],
            consoles=[libvirt.DomainConsoleArgs(type="pty", target_port="0", target_type="serial")],
            # qemu_agent stays off: with it the provider polls the guest agent for
            # addresses on create/refresh, and it is not installed until cloud-init
            # has run. Addresses are static and known anyway.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=None if rebuilding else [
                "vcpu", "memory"]),
        )
        wanted = {"disk": node.disk_gib * GIB, "vcpu": node.vcpu, "memory": node.memory_mib}
        # What this node's VM has (from state: ignored inputs keep their old
        # values) against what the stack says, in words; empty when equal.
        self.pending = pulumi.Output.all(root.size, root.base_volume_id, args.image.volume_id,
                                         self.domain.vcpu, self.domain.memory).apply(
            lambda v: _pending(node.name, wanted, *v))

    def _first_steps(self, name: str, args: NodeArgs) -> None:
        """The node's own gates: booted, the admin key, hakube's helpers (and
        the machine id), /etc/hosts; `ready` is what every later step waits for."""
        spec = args.spec
        self.connection = args.ssh.connection(self.ip, self.host_public_key)
        # The key the node accepts now: the previous one while a rotation
        # runs (hakube:sshPreviousPrivateKey), else the stack's own.
        access = args.ssh.connection(self.ip, self.host_public_key, previous=True)
        # A re-created domain is a new machine: wait for it again (triggers).
        self.booted = step(f"{name}-ready", access, render(HERE / "ready.sh"),
                           triggers=[self.domain.id], parent=self, after=[self.domain])
        # The admin's authorized_keys: exactly the stack's key, written over
        # the access connection; every later step connects with that key. A
        # rotation updates this step first (its text names the new key).
        self.admin_key = step(f"{name}-ssh-key", access, args.ssh.public_key.apply(
            lambda k: render(HERE / "ssh-key.sh", {"KEY": k.strip()})),
            triggers=[self.domain.id], parent=self, after=[self.booted])
        # hakube's shell helpers, which every later step on this node sources.
        # Their text is this step's stdin: editing a helper updates this step
        # only. A new machine gets them again (triggers: the domain).
        helpers = step(f"{name}-helpers", self.connection, steps.install_helpers(),
                       stdin=steps.helpers_bundle(), triggers=[self.domain.id], parent=self,
                       after=[self.admin_key])
        # The machine's identity: an id kept on its root disk, printed by the
        # helpers step. Every later step on this node carries it in its text,
        # so a node on a new disk (a rebuild) runs all of them again, while a
        # domain re-created on the same disk, or a helper edit, runs none.
        self.machine = helpers.stdout
        # Every node of the stack by name: a node-set change updates this
        # step on each node (and touches nothing else of the running ones).
        self.ready = step(f"{name}-hosts", self, steps.step_script(steps.FILE, {
            "DEST": "/etc/hosts", "MODE": "0644", "OWNER": "root:root"}),
            stdin=cloudinit.hosts_file(spec), parent=self, after=[helpers])


def _pending(name: str, wanted: dict, size, base, image, vcpu, memory) -> str:
    gib = lambda b: f"{int(b) // GIB} GiB" if b is not None else "?"  # noqa: E731
    out = []
    if size is not None and int(size) != wanted["disk"]:
        out.append(f"disk {gib(size)} -> {gib(wanted['disk'])}")
    if base and image and base != image:
        out.append("image -> the configured one")
    if vcpu is not None and int(vcpu) != wanted["vcpu"]:
        out.append(f"vcpu {vcpu} -> {wanted['vcpu']}")
    if memory is not None and int(memory) != wanted["memory"]:
        out.append(f"memory {memory} -> {wanted['memory']} MiB")
    return f"{name}: " + ", ".join(out) if out else ""
