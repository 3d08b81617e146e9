"""Lab hosts: one `systemd-nspawn --boot` container per node, on a bridge the
lab creates, each booted with its node's own cloud-init (NoCloud seed).

A host's root is an overlay of the cached lab image (tests/lab/image.py), so
six hosts cost six small upper dirs, not six copies. Its one network link is a
veth pair: the container end carries the node's MAC (cloud-init's
network-config matches on it and renames it eth0), the host end is a port of
the lab bridge. The bridge holds the stack's gateway address; no route or NAT
leads anywhere else, so lab traffic cannot leave this machine.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

LAB_ROOT = Path("/var/lib/hakube-lab")
SEED = Path("var/lib/cloud/seed/nocloud")
SLOTS = 3


@dataclass(frozen=True)
class Slot:
    """Where one lab lives on this machine, so that labs can run side by side
    (one per test module, `make test` runs the modules at once): its own
    bridge, /24, host and disk dirs, link names and cgroups. Slot 0 is the
    stack file's own addresses (Pulumi.lab.yaml's 10.231.4.0/24); slot n
    moves them n /24s up. Every name and path below is the slot's alone, so
    one lab's teardown never touches another's hosts."""
    index: int

    def __post_init__(self):
        if not 0 <= self.index < SLOTS:
            raise ValueError(f"lab slot {self.index}: the lab has slots 0 to {SLOTS - 1}")

    @property
    def bridge(self) -> str:
        return f"hklab{self.index}"

    @property
    def link_prefixes(self) -> tuple[str, str]:
        """(host end, container end) of each host's veth pair."""
        return f"hkl{self.index}", f"hkg{self.index}"

    @property
    def hosts_dir(self) -> Path:
        return LAB_ROOT / "hosts" / str(self.index)

    @property
    def disks_dir(self) -> Path:
        """One dir per libvirt Volume: the upper dir of a host's overlay root."""
        return LAB_ROOT / "disks" / str(self.index)

    @property
    def ssh_dir(self) -> Path:
        return LAB_ROOT / "ssh" / str(self.index)

    @property
    def cgroup(self) -> str:
        return f"hakube-lab-{self.index}"

    def owns_link(self, name: str) -> bool:
        return name == self.bridge or name.startswith(self.link_prefixes)


def sh(*argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, text=True, capture_output=True, **kw)


def link_exists(name: str) -> bool:
    return sh("ip", "link", "show", "dev", name, check=False).returncode == 0


@dataclass
class Bridge:
    """The lab bridge: the stack's gateway address and nothing else."""
    name: str
    address: str            # e.g. 10.231.4.1/24

    def up(self) -> None:
        if not link_exists(self.name):
            sh("ip", "link", "add", self.name, "type", "bridge")
        sh("ip", "addr", "replace", self.address, "dev", self.name)
        sh("ip", "link", "set", self.name, "up")

    def down(self) -> None:
        if link_exists(self.name):
            sh("ip", "link", "del", self.name)


def _cgroup_roots(slot: Slot) -> list[Path]:
    """Where each host gets a cgroup of its own, in every hierarchy this
    process is in (nested under its own cgroup there, so limits still apply).
    nspawn with --keep-unit leaves a container in its caller's cgroups; with
    every host in the same ones, their systemds (cgroup v1 has no cgroup
    namespace) all manage one `/system.slice/<unit>` per unit name, in the
    named systemd hierarchy and in each controller's (pids, devices, memory,
    ...), and a unit two hosts start at the same moment fails on one of them
    with 219/CGROUP: systemd-user-sessions at boot ("System is booting up"
    refusals of a readiness gate), sshd (refused connections), a job started
    on every member at once."""
    roots = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hid, controllers, path = line.split(":", 2)
        if hid == "0":
            mounts = [Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")]
        else:
            names = [c.removeprefix("name=") for c in controllers.split(",")]
            mounts = [Path("/sys/fs/cgroup") / ",".join(names)] + [Path("/sys/fs/cgroup") / n for n in names]
        mount = next((m for m in mounts if (m / "cgroup.procs").exists()), None)
        if mount is not None:
            roots.append(mount / path.lstrip("/") / slot.cgroup)
    return roots


def _enter_cgroup(path: Path) -> None:
    """Create `path` (cpuset needs its cpus and mems set before a task may
    join) and move the calling process into it."""
    for d in (path.parent, path):
        d.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            f = d / knob
            if f.exists() and not f.read_text().strip():
                f.write_text((d.parent / knob).read_text())
    (path / "cgroup.procs").write_text(str(os.getpid()))


def _remove_cgroup(path: Path) -> None:
    """A cgroup and what its host's systemd made below it, leaves first."""
    if not path.exists():
        return
    # os.walk, not rglob: a host's systemd may still remove a unit's cgroup
    # while we walk (rglob then raises); a cgroup already gone is the goal.
    for root, dirs, _ in os.walk(path, topdown=False):
        for name in dirs:
            try:
                (Path(root) / name).rmdir()
            except OSError:
                pass
    try:
        path.rmdir()
    except OSError:
        pass


def _ifname(prefix: str, name: str) -> str:
    """A stable interface name of at most 15 characters."""
    return prefix + hashlib.sha256(name.encode()).hexdigest()[:15 - len(prefix)]


# The machine-wide kernel tunables kubelet writes (its container manager and
# kubeadm's preflight), and those the lab raises (LAB_LIMITS): kept before a
# lab's first host boots, restored when the last lab goes down.
MACHINE_SYSCTLS = ("vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
                   "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes", "fs.inotify.max_user_instances")
SYSCTLS_SAVED = LAB_ROOT / "machine-sysctls.json"
# Every lab host's processes are this machine's root (no user namespace), and
# each host's systemd, journald, networkd and logind (kubelet and containerd
# on a pod host) hold inotify instances: the default 128 ran out with three
# labs at once, and a host's PID 1 exited ("Failed to create control group
# inotify object: Too many open files").
LAB_LIMITS = {"fs.inotify.max_user_instances": 8192}


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


@contextlib.contextmanager
def machine_lock():
    """One lab at a time in what labs share on this machine: the kernel
    tunables below, the cached image and served files (lab.py)."""
    LAB_ROOT.mkdir(parents=True, exist_ok=True)
    fd = os.open(LAB_ROOT / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)                    # closing releases the lock


def save_sysctls() -> None:
    """The machine's values, once for every lab that runs (a later host, of
    this lab or another, must not save what an earlier one's kubelet
    already changed)."""
    with machine_lock():
        if SYSCTLS_SAVED.exists():
            return
        SYSCTLS_SAVED.write_text(json.dumps({k: _sysctl_path(k).read_text().strip() for k in MACHINE_SYSCTLS
                                             if _sysctl_path(k).exists()}) + "\n")


def raise_limits() -> None:
    """LAB_LIMITS, where the machine's are lower (after save_sysctls)."""
    with machine_lock():
        for key, floor in LAB_LIMITS.items():
            if int(_sysctl_path(key).read_text()) < floor:
                _sysctl_path(key).write_text(f"{floor}\n")


def restore_sysctls(unless_others_of: Slot | None = None, saved: Path = SYSCTLS_SAVED) -> dict[str, tuple[str, str]]:
    """Put back what save_sysctls() kept in `saved`, and drop that file;
    returns {key: (was, restored)} of those a host or the lab had changed.
    `unless_others_of`: a lab going down leaves them while another slot
    still has hosts (its kubelets set them; the last lab down puts them
    back)."""
    with machine_lock():
        if not saved.exists():
            return {}
        if unless_others_of is not None and any(
                any(Slot(i).hosts_dir.glob("*")) for i in range(SLOTS)
                if i != unless_others_of.index and Slot(i).hosts_dir.exists()):
            return {}
        changed = {}
        for key, value in json.loads(saved.read_text()).items():
            now = _sysctl_path(key).read_text().strip()
            if now != value:
                _sysctl_path(key).write_text(value + "\n")
                changed[key] = (now, value)
        saved.unlink()
        return changed


# What a host that runs pods needs beyond a VM's defaults, as nspawn options
# (../shared/notes/real-binaries-2026-12.md has each error they answer):
KUBELET_NSPAWN = [
    "--bind=/dev/kmsg",                 # kubelet reads the kernel log
    "--system-call-filter=@keyring",    # runc gives each container a session keyring
    "--capability=all",                 # runc and kubelet make namespaces, mounts, cgroups
]


@dataclass
class Host:
    """One lab host. `boot()` returns once systemd-nspawn is running; the
    program's own readiness gate (SSH + `cloud-init status --wait`) is what
    waits for the boot to finish, as it does for a VM."""
    name: str               # the domain name, e.g. hakube-lab-etcd-01
    mac: str
    slot: Slot
    user_data: str
    meta_data: str
    network_config: str
    disk: Path                      # its Volume's disk (upper/, work/): outlives the host
    process: subprocess.Popen | None = field(default=None, repr=False)
    booted_at: float = 0.0
    kubelet: bool = False           # a Kubernetes node: runs containerd's pods (KUBELET_NSPAWN)

    @property
    def dir(self) -> Path:
        return self.slot.hosts_dir / self.name

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def host_if(self) -> str:
        return _ifname(self.slot.link_prefixes[0], self.name)

    @property
    def guest_if(self) -> str:
        return _ifname(self.slot.link_prefixes[1], self.name)

    @property
    def cgroups(self) -> list[Path]:
        return [root / self.name for root in _cgroup_roots(self.slot)]

    @property
    def log(self) -> Path:
        return self.dir / "console.log"

    def boot(self, image: Path) -> None:
        """Boot on the disk as it is: a new disk boots fresh, one that a
        previous domain used keeps what that machine wrote (cloud-init sees
        the same instance and does not run again), as on a VM."""
        self.discard()
        (self.root).mkdir(parents=True)
        sh("mount", "-t", "overlay", "overlay", "-o",
           f"lowerdir={image},upperdir={self.disk / 'upper'},workdir={self.disk / 'work'}", str(self.root))
        seed = self.root / SEED
        seed.mkdir(parents=True, exist_ok=True)
        (seed / "user-data").write_text(self.user_data)
        (seed / "meta-data").write_text(self.meta_data)
        (seed / "network-config").write_text(self.network_config)
        os.chmod(seed / "user-data", 0o600)  # it carries the host's private key
        # nspawn gives the container a generated machine-id unless the image
        # has one; the image ships none, so every host is a distinct machine.
        sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.guest_if)
        sh("ip", "link", "set", self.guest_if, "address", self.mac)
        sh("ip", "link", "set", self.host_if, "master", self.slot.bridge, "up")
        self._mark_udev_initialized(self.guest_if)
        cgroups = self.cgroups
        for cgroup in cgroups:
            _remove_cgroup(cgroup)

        def own_cgroup() -> None:           # in the child, before nspawn runs
            for cgroup in cgroups:
                try:
                    _enter_cgroup(cgroup)
                except OSError:
                    pass                    # a hierarchy that refuses: the others still separate

        extra: list[str] = []
        if self.kubelet:
            # containerd's store on this machine's own filesystem (overlayfs
            # refuses an overlay upper dir as its upper dir), kept with the disk
            store = self.disk / "containerd"
            store.mkdir(exist_ok=True)
            extra = [*KUBELET_NSPAWN, f"--bind={store}:/var/lib/containerd"]
        env = dict(os.environ)
        if self.kubelet:
            # kubelet sets kernel tunables it needs (vm.overcommit_memory,
            # kernel.panic ...) through /proc/sys, read-only in a container
            # unless nspawn is told otherwise. Those are this machine's own:
            # the lab saved them before its first host (Lab.up, save_sysctls),
            # the last lab down puts them back (down_all).
            env["SYSTEMD_NSPAWN_API_VFS_WRITABLE"] = "1"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                ["systemd-nspawn", "--boot", "--quiet", "--register=no", "--keep-unit",
                 f"--machine={self.name}", f"--directory={self.root}",
                 f"--network-interface={self.guest_if}", "--console=read-only",
                 # etcd's unit asks for these; a VM has them.
                 "--capability=CAP_IPC_LOCK", *extra],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True, preexec_fn=own_cgroup)
        self.booted_at = time.monotonic()

    @staticmethod
    def _mark_udev_initialized(ifname: str) -> None:
        """nspawn moves a link into a container only once udev has initialized
        it, which it reads from udev's database. These machines run no udev, so
        the lab writes that (empty) database entry for its own veth, and only
        for it. Without this, `--network-interface=` refuses the link; the
        alternative, `--network-namespace-path=`, leaves the host's interfaces
        in the container's /sys/class/net, where cloud-init looks for the MAC."""
        if Path("/run/udev/control").exists():
            return                          # a running udev does this itself
        index = Path(f"/sys/class/net/{ifname}/ifindex").read_text().strip()
        db = Path("/run/udev/data")
        db.mkdir(parents=True, exist_ok=True)
        (db / f"n{index}").write_text("")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def leader(self) -> str | None:
        """The PID of the container's init, on this machine (for nsenter)."""
        if not self.running:
            return None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        leader = children.read_text().split()[:1] if children.exists() else []
        return leader[0] if leader else None

    def diagnose(self) -> str:
        """From outside (no SSH needed): why logins may still be refused, what
        systemd is still waiting for. For a failed readiness gate."""
        leader = [self.leader] if self.leader else []
        if not leader:
            return ""
        probe = ("ls -l /run/nologin 2>&1; systemctl is-system-running; "
                 "systemctl status --no-pager -n 5 systemd-user-sessions.service 2>&1 | head -12; "
                 "systemctl list-jobs --no-pager 2>&1 | head -20")
        res = sh("nsenter", "-t", leader[0], "-a", "bash", "-c", probe, check=False)
        return res.stdout + res.stderr

    def shutdown(self, timeout: float = 30) -> None:
        """An orderly poweroff (nspawn turns SIGTERM into one), then SIGKILL."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.process = None

    def discard(self) -> None:
        """Everything this host left behind, including after a crash; not
        its disk, which belongs to its Volume."""
        self.shutdown()
        # (the host end usually goes with the container's namespace)
        sh("ip", "link", "del", self.host_if, check=False)
        for cgroup in self.cgroups:
            _remove_cgroup(cgroup)
        if self.root.is_mount():
            sh("umount", "--lazy", str(self.root))
        if self.dir.exists():
            shutil.rmtree(self.dir)
