"""A signed Debian repository of the Kubernetes packages, made from the
binaries `make tools` built, in the layout of pkgs.k8s.io: a flat repository
per minor, <out>/v<minor>/deb/ with Packages, Release, InRelease,
Release.gpg and Release.key (the armored public key). hakube's package step
(components/kubernetes/packages.sh) reads it exactly as it reads pkgs.k8s.io:
set hakube:kubernetes.packageRepository to the URL <out> is served at.

    python3 tools/kubernetes_repo.py OUT [--gnupghome DIR]

The packages are those of pkgs.k8s.io, with the files and dependencies a
kubeadm node relies on: kubeadm (and kubelet's kubeadm drop-in), kubelet (and
its unit), kubectl, cri-tools (crictl) and kubernetes-cni (the plugins in
/opt/cni/bin). Their units are written here from kubeadm's documented
contract (kubernetes.io, "Configuring each kubelet in your cluster using
kubeadm"), not copied. Each version ends in -0hakube1, below pkgs.k8s.io's
-1.1 of the same release, so a node that later points at pkgs.k8s.io
prefers upstream's.

The signing key is made on first use in --gnupghome (default
<out>/.gnupg, 0700) and kept, so a node that trusted it keeps trusting it.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def up_to_date(target: Path, sources: list[Path]) -> bool:
    """`target` exists and is newer than each source (this script counts as
    one: the caller lists it)."""
    return target.exists() and all(f.resolve().stat().st_mtime <= target.stat().st_mtime for f in sources)


def build_module():
    """tools/build.py (what `make tools` builds), loaded by path: tools/ is
    not a package. One module object per process (its dataclasses look
    their module up by name)."""
    if "tools_build" not in sys.modules:
        spec = importlib.util.spec_from_file_location("tools_build", HERE / "build.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["tools_build"] = module
        spec.loader.exec_module(module)
    return sys.modules["tools_build"]

REVISION = "0hakube1"
ARCH = "amd64"

KUBELET_UNIT = """\
[Unit]
Description=kubelet: the Kubernetes node agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
"""

# What kubeadm writes for kubelet (kubeadm-flags.env, config.yaml, the
# kubeconfigs) reaches kubelet only through this drop-in.
KUBEADM_DROPIN = """\
# kubelet as kubeadm configures it: the kubeconfigs kubeadm init/join write,
# the configuration kubeadm downloads, the flags kubeadm detects for this
# node, then the operator's own (/etc/default/kubelet: KUBELET_EXTRA_ARGS).
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
"""


# kubelet's unit and kubeadm's drop-in are new unit files: systemd reads them
# at once, as a package's deb-systemd-helper would have it do.
POSTINST = """\
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
"""


@dataclass(frozen=True)
class Package:
    name: str
    version: str                       # upstream version, no revision
    files: dict[str, tuple[Path | str, int]]   # path in the package -> (source file or text, mode)
    depends: str = ""
    description: str = ""
    units: bool = False                # ships systemd unit files (a postinst reloads systemd)


def packages(kube: Path, node: Path) -> list[Package]:
    """The five packages of the release whose binaries are in `kube`
    (.tools/kubernetes/v<version>/) and `node` (.tools/node/)."""
    version = kube.name.lstrip("v")
    tool = {t.name: t for t in build_module().tools()}
    cni, crictl = tool["cni-plugins"].version, tool["crictl"].version
    return [
        Package("kubeadm", version,
                {"usr/bin/kubeadm": (kube / "kubeadm", 0o755),
                 "usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf": (KUBEADM_DROPIN, 0o644)},
                depends=f"kubelet (>= 1.{version.split('.')[1]}.0), kubectl, cri-tools (>= 1.30.0)",
                description="Kubernetes cluster bootstrapping tool", units=True),
        Package("kubelet", version,
                {"usr/bin/kubelet": (kube / "kubelet", 0o755),
                 "usr/lib/systemd/system/kubelet.service": (KUBELET_UNIT, 0o644)},
                depends="iptables (>= 1.4.21), kubernetes-cni (>= 1.2.0), iproute2, socat, util-linux, mount, "
                        "ebtables, ethtool, conntrack",
                description="Kubernetes node agent", units=True),
        Package("kubectl", version, {"usr/bin/kubectl": (kube / "kubectl", 0o755)},
                description="Kubernetes command-line client"),
        Package("cri-tools", crictl, {"usr/bin/crictl": (node / "crictl", 0o755)},
                description="command-line client of the container runtime interface (crictl)"),
        Package("kubernetes-cni", cni,
                {f"opt/cni/bin/{b}": (node / b, 0o755) for b in ("bridge", "host-local", "loopback", "portmap")},
                description="container network interface plugins"),
    ]


def build_deb(pkg: Package, out: Path) -> Path:
    """A .deb made with dpkg-deb from a staged tree, files owned by root."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        size = 0
        for path, (src, mode) in pkg.files.items():
            dest = root / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(src, Path):
                shutil.copyfile(src.resolve(), dest)
            else:
                dest.write_text(src)
            dest.chmod(mode)
            size += dest.stat().st_size
        (root / "DEBIAN").mkdir()
        control = [f"Package: {pkg.name}", f"Version: {pkg.version}-{REVISION}", f"Architecture: {ARCH}",
                   "Maintainer: hakube <hakube@localhost>", f"Installed-Size: {size // 1024 + 1}",
                   "Section: admin", "Priority: optional"]
        if pkg.depends:
            control.append(f"Depends: {pkg.depends}")
        control.append(f"Description: {pkg.description}\n built by hakube from its Go modules")
        (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
        if pkg.units:
            (root / "DEBIAN" / "postinst").write_text(POSTINST)
            (root / "DEBIAN" / "postinst").chmod(0o755)
        deb = out / f"{pkg.name}_{pkg.version}-{REVISION}_{ARCH}.deb"
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", str(root), str(deb)],
                       check=True, capture_output=True, env={**os.environ, "SOURCE_DATE_EPOCH": "0"})
    return deb


def _control_of(deb: Path) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb)], check=True, capture_output=True, text=True).stdout


def index(repo: Path) -> None:
    """Packages (and .gz) for every .deb in `repo`, then Release."""
    stanzas = []
    for deb in sorted(repo.glob("*.deb")):
        data = deb.read_bytes()
        stanzas.append(_control_of(deb).rstrip("\n") + "\n"
                       + f"Filename: ./{deb.name}\nSize: {len(data)}\n"
                       + f"MD5sum: {hashlib.md5(data).hexdigest()}\nSHA256: {hashlib.sha256(data).hexdigest()}\n")
    text = "\n".join(stanzas).encode()
    (repo / "Packages").write_bytes(text)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        gz.write(text)
    (repo / "Packages.gz").write_bytes(buf.getvalue())
    lines = ["Origin: hakube", "Label: hakube Kubernetes packages", f"Architectures: {ARCH}",
             f"Date: {formatdate(time.time(), usegmt=True)}", "SHA256:"]
    for name in ("Packages", "Packages.gz"):
        data = (repo / name).read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data):>16} {name}")
    (repo / "Release").write_text("\n".join(lines) + "\n")


def gpg(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["gpg", "--batch", "--yes", "--homedir", str(home), *args],
                          check=True, capture_output=True)


def sign(repo: Path, home: Path) -> None:
    """InRelease, Release.gpg and Release.key with the key in `home`, made
    there first if it has none."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not gpg(home, "--list-secret-keys", "--with-colons").stdout.strip():
        gpg(home, "--passphrase", "", "--quick-generate-key", "hakube Kubernetes packages", "ed25519", "sign",
            "never")
    try:
        gpg(home, "--armor", "--output", str(repo / "Release.key"), "--export")
        gpg(home, "--clearsign", "--output", str(repo / "InRelease"), str(repo / "Release"))
        gpg(home, "--armor", "--detach-sign", "--output", str(repo / "Release.gpg"), str(repo / "Release"))
    finally:
        # gpg leaves an agent running per home; nothing here needs it after
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True)


def make(out: Path, tools_dir: Path, home: Path | None = None) -> list[Path]:
    """A repository per Kubernetes release whose kubelet `make tools` built."""
    made = []
    for kube in sorted((tools_dir / "kubernetes").glob("v*")):
        if not (kube / "kubelet").exists():
            continue
        minor = ".".join(kube.name.lstrip("v").split(".")[:2])
        repo = out / f"v{minor}" / "deb"
        pkgs = packages(kube, tools_dir / "node")
        sources = [src for p in pkgs for src, _ in p.files.values() if isinstance(src, Path)]
        if up_to_date(repo / "InRelease", [*sources, Path(__file__)]):
            made.append(repo)          # made from these binaries already (gzip of ~250 MB takes a while)
            continue
        shutil.rmtree(repo, ignore_errors=True)
        repo.mkdir(parents=True)
        for pkg in pkgs:
            build_deb(pkg, repo)
        index(repo)
        sign(repo, home or out / ".gnupg")
        made.append(repo)
    return made


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--tools", type=Path, default=ROOT / ".tools")
    ap.add_argument("--gnupghome", type=Path)
    args = ap.parse_args(argv)
    made = make(args.out, args.tools, args.gnupghome)
    if not made:
        print(f"no Kubernetes release with a kubelet in {args.tools}/kubernetes: run make tools", file=sys.stderr)
        return 1
    for repo in made:
        print(f"repository: {repo} ({', '.join(p.name for p in sorted(repo.glob('*.deb')))})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
