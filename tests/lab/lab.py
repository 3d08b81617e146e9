"""The lab: the lab stack (`Pulumi.lab.yaml`) brought up by the program's own
graph on real hosts of this machine, and torn down again. Every program run
is the real Pulumi engine's (realrun.py); what it asks the providers for is
made real by LabProviders (providers.py).

    python -m tests.lab.lab up      # bring it up and leave it running (make lab)
    python -m tests.lab.lab down    # remove every lab host, link and file (make lab-down)

Traffic stays on the lab bridge: the only addresses the lab creates are the
bridge's (the stack's gateway) and the hosts' (the stack's node IPs), and the
etcd release server listens on the bridge address only.
"""
from __future__ import annotations

import functools
import http.server
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from config import load, versions
from config.stackfile import raw_from_stack_file
from tests.harness import ROOT, unwrap
from tests.tools import etcd_release
from tools import kubernetes_images, kubernetes_repo

from . import image
from .offsite import OffsiteStore
from .hosts import (SLOTS, Bridge, Slot, _cgroup_roots, _remove_cgroup, machine_lock, raise_limits, restore_sysctls,
                    save_sysctls, sh)
from .providers import NOT_RUN, LabProviders
from .realrun import RealEngine, RealRun
from .ssh import Ssh

STACK = "lab"
RELEASES = ROOT / ".lab" / "etcd-release"
PACKAGES = ROOT / ".lab" / "kubernetes-repo"
# The container images kubeadm asks for, made here (tools/kubernetes_images.py)
# and served on the same port under /images: the lab has no registry, so a
# node's containerd imports them (a registry is Kubernetes part 2's).
IMAGES = ROOT / ".lab" / "kubernetes-images"
IMAGES_PATH = "/images"
# The CNI's manifest, served where the stack's kubernetes.cni.manifestUrl says
# (the release of Flannel whose images are made here, from its Go module).
CNI = ROOT / ".lab" / "cni"
ACCESS_DIR = ROOT / ".lab" / "access"
REAL = ROOT / ".lab" / "real-engine"       # per slot: the real engine's work dir (state, stack file)

class ReleaseServer:
    """Serves .lab/etcd-release under the stack's etcd downloadUrl and the
    Kubernetes package repository (.lab/kubernetes-repo, made by
    tools/kubernetes_repo.py) under its kubernetes.packageRepository, on the
    lab bridge's address only and one port."""

    def __init__(self, spec, bridge_ip: str):
        served = {}                      # URL path prefix -> directory
        port = None
        urls = [("etcd.downloadUrl", spec.etcd.download_url, RELEASES),
                ("kubernetes.packageRepository", spec.kubernetes.package_repo, PACKAGES)]
        if spec.kubernetes.cni.manifest_url:     # the file's directory
            urls.append(("kubernetes.cni.manifestUrl", spec.kubernetes.cni.manifest_url.rsplit("/", 1)[0], CNI))
        for key, url, directory in urls:
            parsed = urlparse(url)
            if parsed.hostname != bridge_ip or (port is not None and (parsed.port or 80) != port):
                raise RuntimeError(f"the lab serves {key} on its bridge ({bridge_ip}:{port or parsed.port or 80}),"
                                   f" not {parsed.netloc}: fix hakube:{key} in Pulumi.lab.yaml")
            port = parsed.port or 80
            served[parsed.path.rstrip("/")] = directory
        served[IMAGES_PATH] = IMAGES
        self.images_url = f"http://{bridge_ip}:{port}{IMAGES_PATH}"

        class Handler(http.server.SimpleHTTPRequestHandler):
            def translate_path(self, path):
                for prefix, directory in served.items():
                    if path.startswith(prefix + "/"):
                        rel = super().translate_path(path[len(prefix):])
                        return str(directory / Path(rel).relative_to(RELEASES))
                return str(RELEASES / "__nothing__")

            def log_message(self, *args):
                pass

        handler = functools.partial(Handler, directory=str(RELEASES))
        self.server = http.server.ThreadingHTTPServer((bridge_ip, port), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def moved(raw, slot: Slot):
    """The stack config with every address of the stack file's /24 (its
    network.cidr, the bridge's URLs, the monitoring source) moved to the
    slot's own /24: slot n is n /24s above the stack file's."""
    cidr = ipaddress.ip_network(raw["network"]["cidr"])
    if cidr.prefixlen != 24:
        raise RuntimeError(f"the lab moves its stack's /24 for each slot; Pulumi.lab.yaml's network.cidr is {cidr}")
    if slot.index == 0:
        return raw
    old = str(cidr.network_address).rsplit(".", 1)[0] + "."
    new = str(cidr.network_address + 256 * slot.index).rsplit(".", 1)[0] + "."

    def move(value):
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        if isinstance(value, str):
            return re.sub(rf"(?<![\d.]){re.escape(old)}(?=\d)", new, value)
        return value
    return move(raw)


class Lab:
    def __init__(self, log=print, overrides: dict | None = None, offsite: bool = False, slot: int = 0):
        """`overrides`: stack config keys merged over Pulumi.lab.yaml's (one
        level deep), e.g. {"nodes": {"loadBalancer": {"count": 2}}}.
        `offsite`: an SFTP store on a lab host of its own, where the stack
        copies its snapshots (etcd.backup.offsite, offsite.py).
        `slot`: where on this machine (hosts.Slot), so labs run side by side."""
        self.log = log
        self.slot = Slot(slot)
        self.raw = raw_from_stack_file(ROOT / f"Pulumi.{STACK}.yaml")
        for key, value in (overrides or {}).items():
            base = self.raw.get(key)
            self.raw[key] = {**base, **value} if isinstance(base, dict) and isinstance(value, dict) else value
        self.raw = moved(self.raw, self.slot)
        self.spec = load(self.raw, STACK)
        net = self.spec.network
        self.bridge = Bridge(self.slot.bridge, f"{net.gateway}/{net.cidr.prefixlen}")
        self.ssh = Ssh(self.slot.ssh_dir)
        self.mocks: LabProviders | None = None
        self.secrets: dict[str, str] = {}   # secret stack config (hakube:sshPrivateKey ...)
        self.offsite: OffsiteStore | None = None
        if offsite:
            self.offsite = OffsiteStore(net.cidr, net.gateway, self.slot)
            etcd = dict(self.raw.get("etcd") or {})
            etcd["backup"] = {**(etcd.get("backup") or {}), "offsite": self.offsite.stack_config()}
            self.raw["etcd"] = etcd
            self.secrets.update(self.offsite.secrets())
            self.spec = load(self.raw, STACK)
        self.server: ReleaseServer | None = None
        self.images: list[tuple[str, Path]] = []    # (name, archive) of kubeadm's images, made at up()
        self.runs: list[RealRun] = []
        self.timings: dict[str, float] = {}
        self.real: RealEngine | None = None         # the stack under the real CLI, from up()

    def _cni_manifest(self) -> None:
        """The manifest of the stack's CNI release, where the lab serves it
        (a Flannel manifest only: the lab makes Flannel's images)."""
        cni = self.spec.kubernetes.cni
        if not cni.manifest_url:
            return
        if cni.plugin != "flannel":
            raise RuntimeError(f"the lab makes Flannel's images, not {cni.plugin}'s: set kubernetes.cni.plugin "
                               "to flannel in Pulumi.lab.yaml")
        made = kubernetes_images.flannel_version()
        if made != cni.version:
            raise RuntimeError(f"the lab made Flannel {made}'s images (make tools), but the stack asks for "
                               f"{cni.version}: set kubernetes.cni.version to {made}")
        CNI.mkdir(parents=True, exist_ok=True)
        name = Path(urlparse(cni.manifest_url).path).name
        shutil.copyfile(kubernetes_images.flannel_manifest(made), CNI / name)

    def give_images(self, connection: dict) -> float:
        """kubeadm's and the CNI's images into a node's containerd, as pulls
        would put them there: the lab has no registry. Seconds taken."""
        assert self.server is not None
        url = self.server.images_url
        fetch = " && ".join(f"curl -fsS -o /var/tmp/image.tar {url}/{path.name} && "
                            "ctr -n k8s.io images import /var/tmp/image.tar >/dev/null" for _, path in self.images)
        res = self.ssh.run(connection, f"sudo sh -c {shlex.quote(fetch + ' && rm -f /var/tmp/image.tar')}")
        if res.rc != 0:
            raise RuntimeError(f"images into {connection['host']}'s containerd: {res.stdout}{res.stderr}")
        return res.seconds

    def runs_pods(self, domain: str) -> bool:
        """A domain of a Kubernetes node (a control plane or a worker) of the stack as it is now."""
        topo = load(self.raw, STACK).topology          # lab.raw changes between runs (nodes added)
        return any(domain.endswith(f"-{n.name}") for n in (*topo.control_planes, *topo.workers))

    # -- lifecycle -----------------------------------------------------------
    def up(self) -> RealRun:
        # what every lab shares (the image, the served files): made or
        # checked by one lab at a time, the others wait and find them made
        with machine_lock():
            t0 = time.monotonic()
            root = image.build()
            self.timings["image"] = time.monotonic() - t0
            etcd_release.build(ROOT / ".lab")
            t0 = time.monotonic()
            if not kubernetes_repo.make(PACKAGES, ROOT / ".tools", ROOT / ".lab" / "gnupg"):
                raise RuntimeError("no Kubernetes release with a kubelet in .tools/kubernetes: run make tools")
            self.images = kubernetes_images.make(IMAGES, ROOT / ".tools", root)
            self._cni_manifest()
            self.timings["packages"] = time.monotonic() - t0
        down_all(self.slot, quiet=True)
        save_sysctls()
        raise_limits()
        self.bridge.up()
        self.server = ReleaseServer(self.spec, str(self.spec.network.gateway))
        self.server.start()
        if self.offsite:
            self.timings["offsite_store"] = self.offsite.boot(root, self.ssh)
            self.log(f"lab: off-host store (SFTP) up at {self.offsite.ip} in {self.timings['offsite_store']:.1f} s")
        self.mocks = LabProviders(self.slot, root, self.ssh, log=self.log, runs_pods=self.runs_pods,
                                  give_images=self.give_images)
        work = REAL / str(self.slot.index)
        shutil.rmtree(work, ignore_errors=True)         # a new stack: its state is this lab's only
        self.real = RealEngine(work, STACK, self.mocks)
        t1 = time.monotonic()
        run = self.apply()
        self.timings["bring_up"] = time.monotonic() - t1
        self.log(f"lab: image {self.timings['image']:.1f} s, bring-up {self.timings['bring_up']:.1f} s "
                 f"({len(self.mocks.steps)} steps)")
        return run

    def apply(self, replace: tuple[str, ...] = (), rebuild: str | None = None) -> RealRun:
        """One `pulumi up` of the lab's stack by the real engine. `replace`:
        resource names or URNs to replace (`pulumi up --replace URN`), as
        `make converge` does; `rebuild`: `make rebuild NODE=`'s node."""
        assert self.mocks is not None and self.real is not None
        self.mocks.begin_run()
        urns = [name if name.startswith("urn:") else self.urn(name) for name in replace]
        self.log(f"lab: run {self.mocks.run_no} of the program" + (f" (replacing {len(urns)})" if urns else ""))
        try:
            run = self.real.up(self.run_config(), tuple(urns), env={"HAKUBE_REBUILD": rebuild} if rebuild else None,
                               secrets=self.secrets)
        except Exception as err:
            if self.mocks.failures:             # what `pulumi up` reports: the first step that failed
                raise self.mocks.failures[0] from err
            raise
        self.log(f"lab: run {self.mocks.run_no} ({run.seconds:.1f} s): {run.changes}")
        self.runs.append(run)
        return run

    def run_config(self) -> dict:
        """The stack config a run sees: the lab's, with `etcd.sha256` pinned to
        the lab's own tarball when the release is one `make tools` built (a
        build's tarball is not upstream's, so hakube's pinned row for that
        version would refuse it, as it should)."""
        etcd = dict(self.raw.get("etcd") or {})
        version = str(etcd.get("version", versions.etcd_default())).lstrip("v")
        if "sha256" not in etcd and etcd_release.lab_built(version):
            etcd["sha256"] = etcd_release.built_sha256(version)
            return {**self.raw, "etcd": etcd}
        return self.raw

    def settled(self) -> dict:
        """`pulumi preview --expect-no-changes` of the lab's stack as it is:
        fails naming what would change."""
        return self.real.expect_no_changes(self.run_config(), self.secrets)

    def predict(self) -> list[tuple[str, str]]:
        """What `make review PREVIEW=` says the next `apply()` runs, from the
        real engine's `pulumi preview --json` of the lab's stack: sorted
        (step, create | update | delete) of every script, those the lab does
        not run (NOT_RUN) left out."""
        from review import from_preview
        review = from_preview(self.real.preview(self.run_config(), self.secrets), self.outputs["nodeIps"], STACK)
        return sorted((i.name, i.action) for i in review.items if i.kind == "step" and i.action
                      and not i.name.endswith(tuple(NOT_RUN)))

    def ran_since(self, since: int) -> list[tuple[str, str]]:
        """Sorted (step, action) of every script the lab ran since step `since`."""
        return sorted((st.name, st.action) for st in self.mocks.steps[since:])

    def commands(self) -> dict[str, str]:
        """URN -> name of every Command in the stack's state."""
        return self.real.commands()

    def urn(self, name: str) -> str:
        """The URN of a resource of the stack's state, by its name."""
        return self.real.urn(name)

    def down(self) -> list[str]:
        """`pulumi destroy`, then anything a failed run left."""
        problems = []
        if self.real:
            try:
                out = self.real.destroy(self.run_config(), self.secrets)
                self.log(f"lab: pulumi destroy ({out['seconds']:.1f} s): {out['changes']}; "
                         "the engine's deletes in the order it started them:\n  "
                         + "\n  ".join(f"{s['op']} {s['urn'].rsplit('::', 1)[-1]}" for s in out.get("steps", [])))
            except Exception as err:            # noqa: BLE001 - reported, teardown goes on
                problems.append(f"pulumi destroy: {str(err)[-1500:]}")
            self.real.close()
        if self.mocks:
            self.mocks.discard_all()            # what a failed destroy left of the hosts
        if self.offsite:
            self.offsite.discard()
        if self.server:
            self.server.stop()
        problems += down_all(self.slot, quiet=True)
        return problems

    # -- access --------------------------------------------------------------
    @property
    def outputs(self) -> dict:
        return unwrap(self.runs[-1].outputs)

    def connection(self, node: str) -> dict:
        """The connection the program built for a node, as the lab ran it."""
        out = self.outputs
        ip = out["nodeIps"][node]
        host_key = next(line.split(" ", 1)[1] for line in out["knownHosts"].splitlines()
                        if line.startswith(f"{ip} "))
        return {"host": ip, "user": out["sshUser"], "privateKey": out["sshPrivateKey"],
                "hostKey": host_key, "dialErrorLimit": 3, "perDialTimeout": 10}

    def sh(self, node: str, command: str, stdin: str | None = None, timeout: float = 120):
        """Run a command on a lab host as the admin user, over SSH."""
        return self.ssh.run(self.connection(node), command, stdin=stdin, timeout=timeout)

    def write_access(self) -> Path:
        """The admin key and known_hosts, for a person to reach the hosts."""
        out = self.outputs
        ACCESS_DIR.mkdir(parents=True, exist_ok=True)
        os.chmod(ACCESS_DIR, 0o700)
        key = ACCESS_DIR / f"hakube-{STACK}.key"
        key.write_text(out["sshPrivateKey"])
        os.chmod(key, 0o600)
        (ACCESS_DIR / f"hakube-{STACK}.known_hosts").write_text(out["knownHosts"])
        # the outputs `make lab-status` reads (with the key: root-only, like the key file)
        outputs = ACCESS_DIR / "outputs.json"
        outputs.write_text(json.dumps(out))
        os.chmod(outputs, 0o600)
        return ACCESS_DIR


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""                           # a cgroup removed while we looked


def down_all(slot: Slot, quiet: bool = False) -> list[str]:
    """Remove every host, link and file of the slot's lab, including those of
    an earlier process (make lab leaves them running); another slot's lab is
    not touched. Returns what it could not remove."""
    problems = []
    hosts_dir = slot.hosts_dir
    for host_dir in sorted(hosts_dir.glob("*")) if hosts_dir.exists() else []:
        root = host_dir / "root"
        pids = sh("pgrep", "-f", f"systemd-nspawn .*--directory={root}( |$)", check=False).stdout.split()
        for pid in pids:
            os.kill(int(pid), signal.SIGTERM)
        deadline = time.monotonic() + 30
        while pids and time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.2)
        for pid in pids:
            if Path(f"/proc/{pid}").exists():
                os.kill(int(pid), signal.SIGKILL)
        if root.is_mount():
            sh("umount", "--lazy", str(root))
        shutil.rmtree(host_dir, ignore_errors=True)
        if not quiet:
            print(f"removed {host_dir.name}")
    for name in lab_links(slot):
        if name != slot.bridge:
            sh("ip", "link", "del", name, check=False)
    Bridge(slot.bridge, "").down()
    udev = Path("/run/udev")
    if not (udev / "control").exists() and (udev / "data").exists():
        # No udev here: the entries are the labs' own (hosts.py); drop the
        # stale ones. The entries are listed before the live links are read:
        # an entry another lab writes meanwhile is for a link already live.
        entries = list((udev / "data").glob("n*"))
        live = {p.read_text().strip() for p in Path("/sys/class/net").glob("*/ifindex")}
        for entry in entries:
            if entry.name[1:] not in live:
                entry.unlink(missing_ok=True)
    for key, (was, now) in restore_sysctls(unless_others_of=slot).items():
        if not quiet:
            print(f"restored this machine's {key}: {was} -> {now} (the lab or a lab host's kubelet had set it)")
    shutil.rmtree(slot.ssh_dir, ignore_errors=True)
    shutil.rmtree(slot.disks_dir, ignore_errors=True)
    # Anything still in a lab host's cgroup is a lab host's process whose
    # nspawn is gone (a host killed without its init): kill it, or its
    # systemd would share the cgroups of the next host of that name.
    for root in _cgroup_roots(slot):
        left = [int(pid) for d, _, files in os.walk(root) if "cgroup.procs" in files
                for pid in _read(Path(d) / "cgroup.procs").split()]
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if left:
            problems.append(f"{len(left)} lab processes were left in {root} (killed)")
            time.sleep(1)
        _remove_cgroup(root)
    problems += left_behind(slot)
    return problems


def lab_links(slot: Slot) -> list[str]:
    """The slot's network links on this machine (its bridge, its hosts' veths)."""
    names = [line.split(":")[1].strip().split("@")[0] for line in sh("ip", "-o", "link", "show").stdout.splitlines()]
    return [name for name in names if slot.owns_link(name)]


def left_behind(slot: Slot) -> list[str]:
    """What of the slot's lab is still on this machine: nspawn processes,
    host dirs, links."""
    problems = []
    left = sh("pgrep", "-f", f"systemd-nspawn .*--directory={slot.hosts_dir}/", check=False).stdout.split()
    if left:
        problems.append(f"nspawn processes still running: {left}")
    if any(slot.hosts_dir.glob("*")) if slot.hosts_dir.exists() else False:
        problems.append(f"host dirs left in {slot.hosts_dir}")
    links = lab_links(slot)
    if links:
        problems.append(f"links left: {links}")
    return problems


def main(argv: list[str]) -> int:
    if os.geteuid() != 0:
        print("the lab needs root (network links, mounts, containers)", file=sys.stderr)
        return 1
    cmd = argv[1] if len(argv) > 1 else "up"
    if cmd == "down":
        problems = [p for i in range(SLOTS) for p in down_all(Slot(i))]
        print("\n".join(problems) or "lab removed")
        return 1 if problems else 0
    if cmd != "up":
        print(f"usage: {argv[0]} up|down", file=sys.stderr)
        return 2
    lab = Lab(offsite=True)
    try:
        lab.up()
    except Exception:
        print("lab: bring-up failed; the hosts are left running to look at (make lab-down removes them)",
              file=sys.stderr)
        raise
    access = lab.write_access()
    rel = os.path.relpath(access, Path.cwd())
    print(f"\nThe lab is up ({lab.timings['bring_up']:.0f} s). Reach its hosts with:")
    for node, ip in lab.outputs["nodeIps"].items():
        print(f"  {node:12} ssh -i {rel}/hakube-{STACK}.key -o UserKnownHostsFile={rel}/hakube-{STACK}.known_hosts "
              f"{lab.outputs['sshUser']}@{ip}")
    print("etcdctl on a control plane: the stack output etcdctlEnv holds its environment.")
    print("The release server stops with this command; everything else keeps running. make lab-down removes it.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
