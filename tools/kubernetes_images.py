"""The container images a kubeadm cluster pulls, made from the binaries `make
tools` built: each an OCI image of one layer, in an archive that `ctr images
import` (and `docker load`) read, named as kubeadm asks for it.

    python3 tools/kubernetes_images.py OUT --userland ROOTFS

kubeadm's control plane and kube-proxy, CoreDNS and the pause image under
registry.k8s.io (`kubeadm config images list` says which tags); Flannel's
two under ghcr.io/flannel-io, as its kube-flannel.yml names them. Static Go
binaries need nothing beside them. kube-proxy and flanneld program the
kernel through iptables (nft backend) and read conntrack, and Flannel's init
containers run `cp`: their images also carry those programs and the shared
libraries they load, taken from ROOTFS (a Debian root with iptables,
nftables, conntrack and coreutils installed, e.g. the lab's image) by
following each binary's ELF dependencies with that root's own ldd.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
try:
    from tools.kubernetes_repo import build_module, up_to_date
except ImportError:                     # run as a script: tools/ is its sys.path[0]
    from kubernetes_repo import build_module, up_to_date
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What kube-proxy (iptables and nftables modes) and flanneld run, and the `cp`
# of Flannel's init containers; iptables is xtables-nft-multi behind links.
USERLAND = ("/usr/sbin/xtables-nft-multi", "/usr/sbin/nft", "/usr/sbin/conntrack", "/usr/bin/cp")
XTABLES_LINKS = ("iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save",
                 "ip6tables-restore")
XTABLES_MODULES = "/usr/lib/x86_64-linux-gnu/xtables"     # iptables' match and target extensions


@dataclass
class Image:
    name: str                                   # repository:tag
    files: dict[str, Path | str] = field(default_factory=dict)   # path in the image -> file here, or link target
    entrypoint: list[str] = field(default_factory=list)
    userland: bool = False                      # carries iptables, nft, conntrack and cp

    @property
    def archive(self) -> str:
        return self.name.replace("/", "_").replace(":", "_") + ".tar"


def images(kube: Path, node: Path) -> list[Image]:
    v = "v" + kube.name.lstrip("v")
    b = build_module()
    tools = {t.name: t for t in b.tools()}
    out = [Image(f"registry.k8s.io/{c}:{v}", {f"/usr/local/bin/{c}": kube / c}, [f"/usr/local/bin/{c}"])
           for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")]
    out.append(Image(f"registry.k8s.io/kube-proxy:{v}", {"/usr/local/bin/kube-proxy": kube / "kube-proxy"},
                     ["/usr/local/bin/kube-proxy"], userland=True))
    out.append(Image(f"registry.k8s.io/coredns/coredns:v{tools['coredns'].version}",
                     {"/coredns": node / "coredns"}, ["/coredns"]))
    out.append(Image(f"registry.k8s.io/pause:{b.NODE_OWN_VERSION}", {"/pause": node / "pause"}, ["/pause"]))
    flannel = flannel_version()
    out.append(Image(f"ghcr.io/flannel-io/flannel:v{flannel}", {"/opt/bin/flanneld": node / "flanneld"},
                     ["/opt/bin/flanneld"], userland=True))
    cni_tag = flannel_cni_tag(flannel_manifest(flannel).read_text())
    out.append(Image(f"ghcr.io/flannel-io/flannel-cni-plugin:{cni_tag}", {"/flannel": node / "flannel"},
                     ["/usr/bin/cp"], userland=True))
    return out


def closure(rootfs: Path, binaries: tuple[str, ...]) -> dict[str, Path | str]:
    """Each binary, the shared libraries it and iptables' extensions load
    (as the root's own ldd resolves them), and the loader: path -> file in
    `rootfs`, or a link's target."""
    files: dict[str, Path | str] = {}
    todo = list(binaries) + sorted(f"{XTABLES_MODULES}/{p.name}" for p in (rootfs / XTABLES_MODULES.lstrip("/"))
                                   .glob("*.so"))
    for path in todo:
        files[path] = rootfs / path.lstrip("/")
        out = subprocess.run(["chroot", str(rootfs), "ldd", path], capture_output=True, text=True).stdout
        for line in out.splitlines():
            parts = line.split()
            lib = parts[2] if "=>" in parts and len(parts) > 2 else parts[0] if parts and parts[0].startswith("/") \
                else None
            if lib and lib.startswith("/"):
                files.setdefault(lib, rootfs / lib.lstrip("/"))
    for link in XTABLES_LINKS:
        files[f"/usr/sbin/{link}"] = "xtables-nft-multi"
    return files


def _add(tar: tarfile.TarFile, path: str, src: Path | str, dirs: set[str]) -> None:
    parts = path.strip("/").split("/")
    for i in range(1, len(parts)):
        d = "/".join(parts[:i])
        if d not in dirs:
            dirs.add(d)
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
    info = tarfile.TarInfo(path.strip("/"))
    if isinstance(src, str):
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, src, 0o777
        tar.addfile(info)
        return
    real = src.resolve()
    data = real.read_bytes()
    info.size, info.mode = len(data), 0o755 if (real.stat().st_mode & 0o111) else 0o644
    tar.addfile(info, io.BytesIO(data))


def layer(files: dict[str, Path | str]) -> bytes:
    """One uncompressed layer, every entry root-owned with mtime 0: the same
    files give the same digest."""
    buf = io.BytesIO()
    dirs: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path in sorted(files):
            _add(tar, path, files[path], dirs)
    return buf.getvalue()


def write_archive(image: Image, files: dict[str, Path | str], out: Path) -> Path:
    """An OCI image layout in a tar (index.json, oci-layout, blobs), with
    Docker's manifest.json beside it: containerd's importer reads the name
    from either."""
    diff = layer(files)
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=1) as f:
        f.write(diff)
    blob = gz.getvalue()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": image.entrypoint, "Env": [PATH_ENV], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(diff).hexdigest()}"]},
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": f"sha256:{hashlib.sha256(config).hexdigest()}", "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": f"sha256:{hashlib.sha256(blob).hexdigest()}", "size": len(blob)}],
    }, sort_keys=True).encode()
    tag = image.name.rsplit(":", 1)[1]
    index = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": f"sha256:{hashlib.sha256(manifest).hexdigest()}", "size": len(manifest),
                       "annotations": {"io.containerd.image.name": image.name,
                                       "org.opencontainers.image.ref.name": tag}}],
    }, sort_keys=True).encode()
    blobs = {hashlib.sha256(x).hexdigest(): x for x in (config, manifest, blob)}
    docker = json.dumps([{"Config": f"blobs/sha256/{hashlib.sha256(config).hexdigest()}",
                          "RepoTags": [image.name],
                          "Layers": [f"blobs/sha256/{hashlib.sha256(blob).hexdigest()}"]}]).encode()
    path = out / image.archive
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index),
                           ("manifest.json", docker),
                           *((f"blobs/sha256/{d}", x) for d, x in sorted(blobs.items()))]:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def make(out: Path, tools_dir: Path, userland_root: Path) -> list[tuple[str, Path]]:
    """(name, archive) of every image, for the Kubernetes release whose
    kube-apiserver `make tools` built."""
    kubes = [k for k in sorted((tools_dir / "kubernetes").glob("v*")) if (k / "kube-apiserver").exists()]
    if not kubes:
        raise SystemExit(f"no Kubernetes release with a kube-apiserver in {tools_dir}/kubernetes: run make tools")
    out.mkdir(parents=True, exist_ok=True)
    user = closure(userland_root, USERLAND)
    made = []
    for image in images(kubes[-1], tools_dir / "node"):
        files = {**(user if image.userland else {}), **image.files}
        archive = out / image.archive
        if not up_to_date(archive, [f for f in files.values() if isinstance(f, Path)] + [Path(__file__)]):
            write_archive(image, files, out)
        made.append((image.name, archive))
    return made


def flannel_version() -> str:
    """The Flannel release `make tools` builds flanneld of (its images are made here)."""
    return next(t.version for t in build_module().tools() if t.name == "flannel")


def flannel_manifest(version: str) -> Path:
    """Flannel's kube-flannel.yml of `version`, from its Go module (the file
    its releases publish, in Documentation/), fetched through the module
    proxy into Go's module cache if it is not there."""
    out = subprocess.run(["go", "mod", "download", "-json", f"github.com/flannel-io/flannel@v{version.lstrip('v')}"],
                         capture_output=True, text=True)
    info = json.loads(out.stdout or "{}")
    if out.returncode != 0 or "Dir" not in info:
        raise SystemExit(f"cannot fetch Flannel {version}'s module: {info.get('Error') or out.stderr.strip()}")
    return Path(info["Dir"]) / "Documentation" / "kube-flannel.yml"


def flannel_cni_tag(manifest: str) -> str:
    """The tag kube-flannel.yml gives its CNI plugin's image (the plugin the
    image here carries is containernetworking/plugins' meta/flannel: see
    tools/build.py)."""
    tags = set(re.findall(r"image:\s*ghcr\.io/flannel-io/flannel-cni-plugin:(\S+)", manifest))
    if len(tags) != 1:
        raise SystemExit(f"kube-flannel.yml names {len(tags)} flannel-cni-plugin tags ({sorted(tags)}), not one")
    return tags.pop()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--tools", type=Path, default=ROOT / ".tools")
    ap.add_argument("--userland", type=Path, required=True)
    args = ap.parse_args(argv)
    for name, path in make(args.out, args.tools, args.userland):
        print(f"{name}  {path} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
