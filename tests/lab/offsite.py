"""The lab's off-host store: a lab host of its own, not a node of the stack,
serving SFTP (Debian's OpenSSH, from the lab image) to one user. The lab's
stack copies its snapshots there (etcd.backup.offsite) with the secret
hakube:etcdOffsiteSecrets, as a user's stack would copy them to any rclone
remote. Its address is on the lab bridge, like every lab host's."""
from __future__ import annotations

import ipaddress
import json
import shutil
import time
from pathlib import Path

import yaml

from tests.realtls import ssh_key_pair

from .hosts import Host, Slot

NAME = "hakube-lab-offsite"
USER = "offsite"
PATH = "etcd/lab"
MAC = "52:54:00:4c:ab:fa"


class OffsiteStore:
    def __init__(self, cidr: ipaddress.IPv4Network, gateway, slot: Slot):
        self.ip = str(cidr.network_address + 250)
        self.cidr, self.gateway, self.slot = cidr, gateway, slot
        self.client_key, self.client_pub = ssh_key_pair()
        self.host_key, self.host_pub = ssh_key_pair()
        self.host: Host | None = None

    # -- what the stack is given --------------------------------------------
    def stack_config(self, retention: int = 3) -> dict:
        """etcd.backup.offsite of the lab stack."""
        return {"remote": {"type": "sftp", "host": self.ip, "user": USER},
                "path": PATH, "retention": retention,
                "knownHosts": f"{self.ip} {self.host_pub}"}

    def secrets(self) -> dict[str, str]:
        """Secret stack config, as `pulumi config set --secret` keeps it (JSON for an object)."""
        return {"etcdOffsiteSecrets": json.dumps({"key_pem": self.client_key})}

    def connection(self) -> dict:
        return {"host": self.ip, "user": USER, "privateKey": self.client_key, "hostKey": self.host_pub,
                "dialErrorLimit": 3, "perDialTimeout": 10}

    # -- the host -------------------------------------------------------------
    def boot(self, image: Path, ssh, timeout: float = 120) -> float:
        """Boot it and wait until SFTP logins work; returns the seconds taken."""
        t0 = time.monotonic()
        disk = self.slot.disks_dir / NAME
        shutil.rmtree(disk, ignore_errors=True)
        (disk / "upper").mkdir(parents=True)
        (disk / "work").mkdir()
        user_data = "#cloud-config\n" + yaml.safe_dump({
            "hostname": "offsite", "locale": "C.UTF-8", "manage_etc_hosts": False,
            "users": [{"name": USER, "shell": "/bin/bash", "lock_passwd": True,
                       "ssh_authorized_keys": [self.client_pub]}],
            "disable_root": True, "ssh_pwauth": False, "ssh_deletekeys": True, "ssh_genkeytypes": ["ed25519"],
            "ssh_keys": {"ed25519_private": self.host_key, "ed25519_public": self.host_pub},
            "package_update": False,
        }, sort_keys=False)
        network = yaml.safe_dump({"version": 2, "ethernets": {"primary": {
            "match": {"macaddress": MAC}, "set-name": "eth0", "dhcp4": False, "dhcp6": False,
            "addresses": [f"{self.ip}/{self.cidr.prefixlen}"],
            "routes": [{"to": "0.0.0.0/0", "via": str(self.gateway)}]}}}, sort_keys=False)
        self.host = Host(name=NAME, mac=MAC, slot=self.slot, user_data=user_data,
                         meta_data=yaml.safe_dump({"instance-id": NAME, "local-hostname": "offsite"}),
                         network_config=network, disk=disk)
        self.host.boot(image)
        deadline = time.monotonic() + timeout
        while True:
            res = ssh.run(self.connection(), "cloud-init status --wait >/dev/null; echo up", timeout=60)
            if res.rc == 0 and "up" in res.stdout:
                return time.monotonic() - t0
            if time.monotonic() > deadline:
                raise RuntimeError(f"the off-host store did not accept SFTP logins in {timeout:.0f} s: "
                                   f"{res.stderr[-500:]}")
            time.sleep(1)

    def listing(self, ssh) -> dict[str, int]:
        """The files in the stack's folder there: name -> size."""
        res = ssh.run(self.connection(), f"cd {PATH} 2>/dev/null && stat -c '%n %s' * 2>/dev/null || true")
        return {name: int(size) for name, size in (line.split() for line in res.stdout.splitlines() if line)}

    def read(self, ssh, name: str) -> str:
        return ssh.run(self.connection(), f"cat {PATH}/{name}").stdout

    def discard(self) -> None:
        if self.host is not None:
            self.host.discard()
            self.host = None
        shutil.rmtree(self.slot.disks_dir / NAME, ignore_errors=True)
