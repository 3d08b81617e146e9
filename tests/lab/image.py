"""The lab image: a Debian rootfs made with debootstrap, with what a hakube
node needs at boot (systemd, sshd, cloud-init, sudo) and what the checks use.
Cached under LAB_HOME, keyed by a hash of its package list, so it is rebuilt
only when that list changes.

    python -m tests.lab.image        # build (or reuse) and print its path
"""
from __future__ import annotations

import hashlib
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from components import cloudinit

LAB_HOME = Path(os.environ.get("HAKUBE_LAB_HOME", "/var/lib/hakube-lab"))
SUITE = "bookworm"
LAB_PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "udev", "openssh-server", "cloud-init", "sudo",
    "iproute2", "iputils-ping", "procps", "gzip", "openssl", "python3", "netcat-openbsd", "less",
    # cloud-init's locale module runs update-locale, as on a Debian cloud image.
    "locales",
    # debootstrap does not resolve virtual packages: name the provider of
    # python3-cryptography's python3-cffi-backend-api-max dependency.
    "python3-cffi-backend",
    # The containerd step installs the distribution's containerd when missing;
    # the lab hosts have no mirror, so it is in the image and the step's
    # configure-and-restart path is what runs.
    "containerd",
    # The off-host step installs Debian's rclone when missing (etcd.backup.offsite), likewise.
    "rclone",
    # What the kubelet package depends on beyond the image (pkgs.k8s.io's
    # kubelet does too): apt on a user's node fetches them from its mirror.
    "iptables", "ebtables", "ethtool",
]
# Every package a node's cloud-init asks for is already in the image: the lab
# hosts have no mirror, and cloud-init's install finds them installed.
PACKAGES = sorted(set(LAB_PACKAGES) | set(cloudinit.ALL_PACKAGES))


def mirror() -> str:
    """This machine's Debian mirror, from its own apt sources."""
    for path in [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]:
        if path.exists():
            for line in path.read_text().splitlines():
                m = re.match(r"^\s*URIs:\s*(\S+)", line) or re.match(r"^\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+" + SUITE + r"\s", line)
                if m and "security" not in m.group(1):
                    return m.group(1)
    raise RuntimeError("no Debian mirror found in /etc/apt/sources*")


def image_key() -> str:
    """Its packages and the image-wide settings (_prepare's own text)."""
    return hashlib.sha256(("\n".join([SUITE, *PACKAGES, inspect.getsource(_prepare), LAB_CONTAINERD_PRE])
                           ).encode()).hexdigest()[:12]


def build(log=sys.stderr) -> Path:
    root = LAB_HOME / f"rootfs-{image_key()}"
    if (root / ".hakube-complete").exists():
        return root
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is needed: apt-get install debootstrap systemd-container")
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
                    SUITE, str(tmp), mirror()], check=True, stdout=log, stderr=log)
    _prepare(tmp)
    (tmp / ".hakube-complete").write_text(image_key() + "\n")
    tmp.rename(root)
    _prune(keep=root)
    return root


def _prune(keep: Path) -> None:
    """Older images (~450 MB each) that no running host is built on."""
    mounts = Path("/proc/mounts").read_text()
    for old in LAB_HOME.glob("rootfs-*"):
        if old != keep and f"lowerdir={old}" not in mounts:
            shutil.rmtree(old, ignore_errors=True)


LAB_CONTAINERD_PRE = """#!/bin/sh
# containerd's config as the containerd step wrote it, with the lab's changes
# (tests/lab/image.py says why); cgroup controllers writable for pods.
set -e
for c in /sys/fs/cgroup/*/; do
  case "$c" in */unified/|*/systemd/) continue ;; esac
  mount -o remount,bind,rw "$c" 2>/dev/null || true
done
mkdir -p /run/hakube-lab
src=/etc/containerd/config.toml
[ -f "$src" ] || containerd config default >/run/hakube-lab/default.toml
[ -f "$src" ] || src=/run/hakube-lab/default.toml
sed -E 's/^([[:space:]]*restrict_oom_score_adj[[:space:]]*=[[:space:]]*)false/\\1true/' "$src" \
  >/run/hakube-lab/containerd.toml
"""


def _prepare(root: Path) -> None:
    """Image-wide settings; everything per node comes from cloud-init."""
    # cloud-init reads the NoCloud seed each host gets under /var/lib/cloud/seed.
    cfg = root / "etc/cloud/cloud.cfg.d/90-hakube-lab.cfg"
    cfg.write_text("datasource_list: [ NoCloud, None ]\n")
    # networkd renders the hosts' network-config; no ifupdown in the image.
    subprocess.run(["chroot", str(root), "systemctl", "enable", "systemd-networkd.service"],
                   check=True, capture_output=True)
    # hakube's network-config says `accept-ra: false` (IPv4 only): netplan
    # honours it, bookworm's cloud-init 22.4 drops it when it renders
    # networkd's file, so the image tells networkd itself, for the file
    # cloud-init writes. Without it each boot waited 12 s for an RA.
    ra = root / "etc/systemd/network/10-cloud-init-eth0.network.d"
    ra.mkdir(parents=True, exist_ok=True)
    (ra / "hakube-no-ra.conf").write_text("[Network]\nIPv6AcceptRA=no\n")
    # Every host is given its identity by cloud-init, not by the image.
    for f in ("etc/hostname", "etc/machine-id"):
        (root / f).write_text("")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    # containerd on a container host: what a VM does not need, kept out of
    # the product's config (the containerd step writes /etc/containerd/
    # config.toml as on a VM; containerd reads a copy with the lab's changes).
    # - runc cannot raise a process's oom_score_adj here (no process on this
    #   machine has CAP_SYS_RESOURCE): restrict_oom_score_adj;
    # - nspawn mounts the cgroup v1 controllers read-only; pods need their own
    #   cgroups in each (kubepods.slice): mounted writable before containerd.
    pre = root / "usr/local/sbin/hakube-lab-containerd-config"
    pre.write_text(LAB_CONTAINERD_PRE)
    pre.chmod(0o755)
    dropin = root / "etc/systemd/system/containerd.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "hakube-lab.conf").write_text(
        "[Service]\nExecStartPre=/usr/local/sbin/hakube-lab-containerd-config\n"
        "ExecStart=\nExecStart=/usr/bin/containerd --config /run/hakube-lab/containerd.toml\n")
    # Nothing in the lab reaches a package mirror.
    (root / "etc/apt/sources.list").write_text("")
    for f in (root / "etc/apt/sources.list.d").glob("*"):
        f.unlink()


if __name__ == "__main__":
    print(build())
