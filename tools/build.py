"""Build the real binaries hakube runs under from their Go modules, cached by
version outside the clone, and link them into one directory on PATH.

    python3 tools/build.py [--bin DIR] [--cache DIR] [--only NAME...]

Each tool is a wrapper module in tools/<name>/ (tools/etcd/v<version>/ for
each etcd release): its go.mod and go.sum are the one place its version and
every dependency's hash are written. A build lands in
$HAKUBE_TOOLS_CACHE (default /var/cache/hakube-tools)/<name>-<version>-<key>/,
where key is a digest of the wrapper, the flags and the Go version, so a warm
machine rebuilds nothing and a changed wrapper or Go rebuilds that tool only.

Adding an etcd release: copy tools/etcd/v<an existing one>/ to
tools/etcd/v<new>/, set every go.etcd.io/etcd/* require in its go.mod to the
new version (3.5 also needs raft/v3 and client/v2 v2.305.<patch>), run
`go mod tidy` there, and add its tag's short commit to ETCD_GIT_SHA. A
wrapper that requires only server/v3 (3.5.31: the proxy serves no clients at
that tag) builds `etcd` alone.

Adding a Kubernetes release: `python3 tools/build.py --new-kubernetes
v1.<minor>.<patch>` writes tools/kubernetes/v<version>/ from that release's
own go.mod (each k8s.io/<staging> module it replaces with a ./staging path is
replaced with the published v0.<minor>.<patch> instead) and runs `go mod
tidy` there.

What the proxy refuses is reported by module, version and message, not
papered over: see REFUSED below.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_CACHE = Path(os.environ.get("HAKUBE_TOOLS_CACHE", "/var/cache/hakube-tools"))

# etcd's build.sh stamps the short commit of the release tag into the binary
# (`etcd --version` prints it as "Git SHA"). Read from etcd-io/etcd's tags;
# a tag newer than the copy read here gets "unknown" rather than a guess.
ETCD_GIT_SHA = {
    "3.5.31": "5ddacc1f",
    "3.5.33": "9f4b1254",
    "3.6.14": "fc04cf70",
}


@dataclass(frozen=True)
class Tool:
    name: str                  # cache and report name
    wrapper: Path              # the wrapper module's directory
    version: str               # the release it builds (from the wrapper's go.mod)
    packages: dict[str, str]   # output file -> Go main package
    ldflags: tuple[str, ...] = ()
    tags: str = ""
    extra: dict[str, str] = field(default_factory=dict)   # output file -> file in a module's zip ("<module>:<path>")
    pack: str = ""             # "etcd": lay the binaries out as an upstream release tarball; "etcd-server": etcd alone
    cgo: bool = False          # built with cgo, linked statically (gcc and libc6-dev)


def required_version(wrapper: Path, module: str) -> str:
    m = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v\S+)", (wrapper / "go.mod").read_text(), re.M)
    if not m:
        raise SystemExit(f"{wrapper}/go.mod does not require {module}")
    return m.group(1)


def tools() -> list[Tool]:
    out = []
    pw = HERE / "pulumi"
    v = required_version(pw, "github.com/pulumi/pulumi/pkg/v3")
    out.append(Tool(
        "pulumi", pw, v.lstrip("v"),
        {"pulumi": "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"},
        # The flags of Pulumi's own release build (.goreleaser.yml).
        ldflags=("-s", "-w", f"-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version={v}"),
        tags="osusergo,grpcnotrace",
        extra={"pulumi-language-python-exec":
               "github.com/pulumi/pulumi/sdk/v3:python/cmd/pulumi-language-python-exec"},
    ))
    for wrapper in sorted((HERE / "etcd").iterdir(), key=lambda p: _vkey(p.name)):
        if not (wrapper / "go.mod").exists():
            continue
        v = required_version(wrapper, "go.etcd.io/etcd/server/v3").lstrip("v")
        sha = ETCD_GIT_SHA.get(v, "unknown")
        # A wrapper builds the mains it requires. One whose clients the proxy
        # does not serve (3.5.31) builds the server alone; the lab packs it
        # with a newer patch's clients (tests/tools/etcd_release.py).
        mains = {b: m for b, m in ETCD_MAINS.items() if _requires(wrapper, m)}
        out.append(Tool(
            f"etcd-v{v}", wrapper, v, mains,
            # scripts/build_lib.sh: CGO off, -trimpath -installsuffix=cgo, the Git SHA symbol.
            ldflags=(f"-X=go.etcd.io/etcd/api/v3/version.GitSHA={sha}",),
            pack="etcd" if len(mains) == len(ETCD_MAINS) else "etcd-server",
        ))
    for wrapper in sorted((HERE / "kubernetes").iterdir(), key=lambda p: _vkey(p.name)):
        if not (wrapper / "go.mod").exists():
            continue
        v = required_version(wrapper, "k8s.io/kubernetes")
        for binary in KUBERNETES_BINARIES if v != LAB_KUBERNETES else KUBERNETES_COMMANDS:
            out.append(Tool(
                f"{binary}-{v}", wrapper, v.lstrip("v"),
                {binary: f"k8s.io/kubernetes/cmd/{binary}"},
                ldflags=("-s", "-w", *kubernetes_version_ldflags(v)),
                pack="kubernetes",
            ))
    for name, (module, mains, stamp) in NODE_TOOLS.items():
        wrapper = HERE / "node" / name
        v = required_version(wrapper, module) if module else "v" + NODE_OWN_VERSION
        cgo = name in NODE_CGO
        out.append(Tool(name, wrapper, v.lstrip("v"), dict(mains),
                        ldflags=("-s", "-w", *([stamp.format(v=v)] if stamp else []),
                                 *(["-extldflags=-static"] if cgo else [])), pack="node", cgo=cgo))
    return out


# The Kubernetes commands a tools/kubernetes/v<version>/ wrapper pins (its
# go.sum covers them; wrappers written before kube-proxy was built pin the
# other six), and those built, each cached on its own so that building one
# more rebuilds no other.
KUBERNETES_COMMANDS = ("kubeadm", "kubelet", "kube-apiserver", "kube-controller-manager",
                       "kube-scheduler", "kubectl", "kube-proxy")
KUBERNETES_BINARIES = ("kubeadm",)
# The release the lab runs for real gets every command; the others get
# kubeadm alone (hakube's configs are validated by it, not run).
LAB_KUBERNETES = "v1.36.3"

# What a Kubernetes node runs beside the Kubernetes binaries, each from its
# wrapper tools/node/<name>/: name -> (module, {binary: main package}, the
# -X stamp of its version). Linked as .tools/node/<binary>.
CNI = "github.com/containernetworking/plugins/plugins"
NODE_TOOLS = {
    "crictl": ("sigs.k8s.io/cri-tools", {"crictl": "sigs.k8s.io/cri-tools/cmd/crictl"},
               "-X sigs.k8s.io/cri-tools/pkg/version.Version={v}"),
    # the plugins kubeadm's nodes and Flannel's config call (bridge, host-local,
    # loopback, portmap)
    "cni-plugins": ("github.com/containernetworking/plugins",
                    {b: f"{CNI}/{kind}/{b}" for kind, b in (("main", "bridge"), ("main", "loopback"),
                                                            ("ipam", "host-local"), ("meta", "portmap"))},
                    "-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion={v}"),
    # Flannel's own CNI plugin (it reads /run/flannel/subnet.env and hands the
    # pod to bridge and host-local): github.com/flannel-io/cni-plugin is refused
    # by the proxy; containernetworking/plugins carried the same plugin until
    # v0.9.1 (meta/flannel), which the proxy serves.
    "cni-flannel": ("github.com/containernetworking/plugins", {"flannel": f"{CNI}/meta/flannel"},
                    "-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion={v}"),
    "flannel": ("github.com/flannel-io/flannel", {"flanneld": "github.com/flannel-io/flannel"},
                "-X github.com/flannel-io/flannel/pkg/version.Version={v}"),
    # the release kubeadm 1.36 deploys (constants.CoreDNSVersion)
    "coredns": ("github.com/coredns/coredns", {"coredns": "github.com/coredns/coredns"},
                "-X github.com/coredns/coredns/coremain.GitCommit={v}"),
    # a pod sandbox's process: hakube's own (tools/node/pause/main.go)
    "pause": ("", {"pause": "hakube.local/tools/node-pause"}, "-X main.version={v}"),
}
# Built with cgo as upstream builds them: flannel's UDP backend is C on amd64
# (its Makefile: CGO_ENABLED=1, -extldflags "-static").
NODE_CGO = ("flannel",)
# the version the pause image is tagged with: the one kubeadm 1.36 asks for
# (constants.PauseVersion), so kubelet and containerd find it under that name
NODE_OWN_VERSION = "3.10.2"


def kubernetes_version_ldflags(version: str, build_date: str | None = None) -> list[str]:
    """What hack/lib/version.sh stamps. Unstamped, a binary calls itself
    v0.0.0-master+$Format:%H$ and kubeadm refuses to work. The build date,
    added at build time, is the release tag's time as the proxy records it,
    so a build does not depend on the clock."""
    major, minor = version.lstrip("v").split(".")[:2]
    stamps = {"gitVersion": version, "gitMajor": major, "gitMinor": minor, "gitTreeState": "clean"}
    if build_date:
        stamps["buildDate"] = build_date
    return [f"-X k8s.io/{pkg}.{key}={val}"
            for pkg in ("client-go/pkg/version", "component-base/version") for key, val in stamps.items()]


def release_time(wrapper: Path, module: str) -> str:
    return json.loads(subprocess.run(["go", "list", "-m", "-json", module], cwd=wrapper, env=go_env(),
                                     check=True, capture_output=True, text=True).stdout)["Time"]


ETCD_MAINS = {"etcd": "go.etcd.io/etcd/server/v3", "etcdctl": "go.etcd.io/etcd/etcdctl/v3",
              "etcdutl": "go.etcd.io/etcd/etcdutl/v3"}


def _requires(wrapper: Path, module: str) -> bool:
    return re.search(rf"^\s*(?:require\s+)?{re.escape(module)} v", (wrapper / "go.mod").read_text(), re.M) is not None


def _vkey(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", name))


def go_version() -> str:
    return subprocess.run(["go", "env", "GOVERSION"], check=True, capture_output=True, text=True).stdout.strip()


def cache_key(tool: Tool, gover: str) -> str:
    h = hashlib.sha256()
    for f in sorted(tool.wrapper.iterdir()):
        if f.is_file():
            h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    h.update(json.dumps([tool.packages, tool.ldflags, tool.tags, tool.extra, tool.pack, gover]
                        + (["cgo"] if tool.cgo else [])).encode())
    return h.hexdigest()[:12]


def go_env() -> dict[str, str]:
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=readonly -buildvcs=false")
    env.setdefault("GOTOOLCHAIN", "local")
    return env


def build(tool: Tool, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "bin").mkdir(parents=True)
    env = go_env()
    if tool.cgo:
        env["CGO_ENABLED"] = "1"
    ldflags = list(tool.ldflags)
    if tool.pack == "kubernetes":
        ldflags += [f for f in kubernetes_version_ldflags(f"v{tool.version}",
                                                          release_time(tool.wrapper, "k8s.io/kubernetes"))
                    if ".buildDate=" in f]
    for out, pkg in tool.packages.items():
        cmd = ["go", "build", "-trimpath", "-installsuffix=cgo"]
        if tool.tags:
            cmd += ["-tags", tool.tags]
        cmd += ["-ldflags", " ".join(ldflags), "-o", str(tmp / "bin" / out), pkg]
        res = subprocess.run(cmd, cwd=tool.wrapper, env=env, capture_output=True, text=True)
        if res.returncode != 0:
            # go names the module and version it could not fetch or compile
            raise SystemExit(f"tools: {tool.name}: go build {pkg} failed in {tool.wrapper}:\n"
                             + "\n".join(line for line in res.stderr.splitlines()
                                         if not line.startswith("go: downloading"))
                             + f"\n(after editing {tool.wrapper}/go.mod, run `go mod tidy` there)")
    for out, ref in tool.extra.items():
        module, path = ref.split(":", 1)
        moddir = subprocess.run(["go", "list", "-m", "-f", "{{.Dir}}", module], cwd=tool.wrapper, env=env,
                                check=True, capture_output=True, text=True).stdout.strip()
        shutil.copy(Path(moddir) / path, tmp / "bin" / out)
        (tmp / "bin" / out).chmod(0o755)
    if tool.pack == "etcd":
        pack_etcd(tool.version, tmp / "bin", tmp / "release" / f"v{tool.version}")
    (tmp / "tool.json").write_text(json.dumps({"name": tool.name, "version": tool.version,
                                               "go": go_version(), "built": time.time()}) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def pack_etcd(version: str, bin_dir: Path, out_dir: Path) -> None:
    """Upstream's release layout: etcd-v<v>-linux-amd64/{etcd,etcdctl,etcdutl}
    in a tarball, with a SHA256SUMS beside it, so the install step's own
    download-and-verify path runs against it unchanged."""
    name = f"etcd-v{version}-linux-amd64"
    out_dir.mkdir(parents=True)
    buf = io.BytesIO()
    # mtime 0 in the gzip header and every entry: the same binaries give the
    # same tarball, so its sha256 is a fact of the build, not of the clock.
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for b in ("etcd", "etcdctl", "etcdutl"):
            info = tar.gettarinfo(str(bin_dir / b), arcname=f"{name}/{b}")
            info.mode, info.uid, info.gid, info.uname, info.gname, info.mtime = 0o755, 0, 0, "root", "root", 0
            with open(bin_dir / b, "rb") as f:
                tar.addfile(info, f)
    tgz = out_dir / f"{name}.tar.gz"
    tgz.write_bytes(buf.getvalue())
    (out_dir / "SHA256SUMS").write_text(f"{hashlib.sha256(tgz.read_bytes()).hexdigest()}  {tgz.name}\n")


def link(tool: Tool, built: Path, bin_dir: Path) -> None:
    """CLI binaries go on PATH (bin_dir); each etcd release is linked whole as
    <bin_dir>/../etcd/v<version> (bin/ and an upstream-layout release/), for
    the lab's release server and the tests that start real etcd; each
    Kubernetes binary as <bin_dir>/../kubernetes/v<version>/<binary>."""
    if tool.pack in ("etcd", "etcd-server"):
        _symlink(bin_dir.parent / "etcd" / f"v{tool.version}", built)
        return
    if tool.pack == "kubernetes":
        # Several minors side by side: .tools/kubernetes/v<version>/<binary>.
        for f in (built / "bin").iterdir():
            _symlink(bin_dir.parent / "kubernetes" / f"v{tool.version}" / f.name, f)
        return
    if tool.pack == "node":
        # What the lab's nodes get, never this machine's PATH (crictl, flanneld ...)
        for f in (built / "bin").iterdir():
            _symlink(bin_dir.parent / "node" / f.name, f)
        return
    for f in (built / "bin").iterdir():
        _symlink(bin_dir / f.name, f)


def _symlink(here: Path, target: Path) -> None:
    here.parent.mkdir(parents=True, exist_ok=True)
    if here.is_symlink() or here.exists():
        here.unlink()
    here.symlink_to(target)


KUBERNETES_TOOLS_GO = """//go:build tools

// Package tools pins the Kubernetes commands hakube builds, so that
// `go mod tidy` keeps every module they need in go.sum. Written by
// `tools/build.py --new-kubernetes`.
package tools

import (
{imports})
"""


def new_kubernetes_wrapper(version: str) -> Path:
    version = "v" + version.lstrip("v")
    env = go_env()
    info = json.loads(subprocess.run(["go", "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
                                     env=env, check=True, capture_output=True, text=True).stdout)
    upstream = Path(info["GoMod"]).read_text()
    goline = re.search(r"^go (\S+)$", upstream, re.M).group(1)
    staging = re.findall(r"^\s*(k8s\.io/\S+) => \./staging/", upstream, re.M)
    if not staging:
        raise SystemExit(f"k8s.io/kubernetes {version}: no ./staging replaces in its go.mod")
    patch = version.lstrip("v").split(".", 1)[1]          # 1.36.3 -> 36.3 -> v0.36.3
    wrapper = HERE / "kubernetes" / version
    wrapper.mkdir(parents=True, exist_ok=True)
    (wrapper / "go.mod").write_text(
        f"module hakube.local/tools/kubernetes\n\ngo {goline}\n\nrequire k8s.io/kubernetes {version}\n\n"
        "// k8s.io/kubernetes replaces its staging modules with ./staging paths, which a\n"
        "// dependency's go.mod cannot do for us: each is its published v0.<minor>.<patch>.\n"
        "replace (\n" + "".join(f"\t{m} => {m} v0.{patch}\n" for m in staging) + ")\n")
    (wrapper / "tools.go").write_text(KUBERNETES_TOOLS_GO.format(
        imports="".join(f'\t_ "k8s.io/kubernetes/cmd/{b}"\n' for b in KUBERNETES_COMMANDS)))
    subprocess.run(["go", "mod", "tidy"], cwd=wrapper, env=dict(env, GOFLAGS="-mod=mod"), check=True)
    return wrapper


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", type=Path, default=ROOT / ".tools" / "bin")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--new-kubernetes", metavar="VERSION", help="write tools/kubernetes/<VERSION>/ and exit")
    args = ap.parse_args(argv)
    if args.new_kubernetes:
        print(f"tools: wrote {new_kubernetes_wrapper(args.new_kubernetes)}")
        return 0
    gover = go_version()
    start, built, cached = time.monotonic(), 0, 0
    for tool in tools():
        if args.only is not None and tool.name not in args.only:
            continue
        dest = args.cache / f"{tool.name}-{cache_key(tool, gover)}"
        if (dest / "tool.json").exists():
            cached += 1
            print(f"tools: {tool.name:14} cached   {dest}")
        else:
            t0 = time.monotonic()
            build(tool, dest)
            built += 1
            print(f"tools: {tool.name:14} built in {time.monotonic() - t0:6.1f} s  {dest}")
        link(tool, dest, args.bin)
    print(f"tools: {built} built, {cached} cached, {time.monotonic() - start:.1f} s ({gover}); "
          f"binaries in {args.bin}")
    for module, tried in REFUSED:
        print(f"tools: not built, refused by the Go module proxy: {module} ({tried})")
    return 0


# Modules the Go module proxy refuses here (2026-12-03), each tried at its
# tag, at the pseudo-version of its release commit, @latest and @v/list; all
# answer "403 Forbidden: This module version is not available." The stack's
# language host and providers cannot be built until they are served.
REFUSED = [
    ("github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3",
     "pseudo-versions of v3.259.0's commit 0ac56e876614; no tags of its own; list refused"),
    ("github.com/pulumi/pulumi-command/provider", "v1.2.1 = v0.0.0-20260303235922-7f3eb6f3b77c, and v1.0.4..v1.2.0"),
    ("github.com/pulumi/pulumi-tls/provider/v5", "v5.6.2, v5.2.3..v5.5.1 and their pseudo-versions"),
    ("github.com/pulumi/pulumi-libvirt/provider", "v0.5.4 = v0.0.0-20250102165834-551204e65927, v0.5.1..v0.5.3"),
]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
