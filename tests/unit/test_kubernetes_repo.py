"""The Kubernetes package repository made from `make tools`' builds
(tools/kubernetes_repo.py), read by the real apt and gpgv as hakube's
package step reads pkgs.k8s.io: the signed Release verifies against
Release.key, and `apt-cache madison` offers the release with the version
packages.sh looks for; each package holds what kubeadm's nodes rely on."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tools import kubernetes_repo

pytestmark = pytest.mark.tools
TOOLS = ROOT / ".tools"
LAB = kubernetes_repo.build_module().LAB_KUBERNETES.lstrip("v")
MINOR = ".".join(LAB.split(".")[:2])


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("repo")
    made = kubernetes_repo.make(out, TOOLS, out / "gnupg")
    assert made == [out / f"v{MINOR}" / "deb"], made
    return made[0]


def apt(tmp: Path, repo: Path, *args: str) -> str:
    """apt with a state, cache and sources of its own: only `repo`, as
    packages.sh writes it (signed-by the repository's dearmored key)."""
    for d in ("state/lists/partial", "cache/archives/partial", "etc/apt.conf.d", "etc/preferences.d",
              "etc/sources.list.d"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    key = tmp / "key.gpg"
    subprocess.run(["gpg", "--batch", "--yes", "--dearmor", "-o", str(key), str(repo / "Release.key")], check=True)
    (tmp / "etc/sources.list").write_text(f"deb [signed-by={key}] file://{repo}/ /\n")
    opts = [f"-oDir::State={tmp}/state", f"-oDir::Cache={tmp}/cache", f"-oDir::Etc={tmp}/etc",
            "-oDir::State::status=/dev/null", "-oAPT::Architecture=amd64", "-oDebug::NoLocking=1"]
    res = subprocess.run(["apt-get", *opts, *args[:1]] if args[0] == "update" else ["apt-cache", *opts, *args],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return res.stdout + res.stderr


def test_apt_trusts_the_signed_release_and_offers_the_release_packages_sh_asks_for(repo, tmp_path):
    out = apt(tmp_path, repo, "update")
    assert "NO_PUBKEY" not in out and "not signed" not in out, out
    madison = apt(tmp_path, repo, "madison", "kubeadm")
    # packages.sh: the first version whose upstream part is the stack's
    assert f"kubeadm | {LAB}-{kubernetes_repo.REVISION} | file:{repo} " in madison, madison
    depends = apt(tmp_path, repo, "depends", "kubeadm", "kubelet")
    # in this repository: kubeadm's own; from the node's Debian or Ubuntu
    # mirror (unknown here, so apt shows them <in brackets>): kubelet's tools
    for dep in ("kubelet", "kubectl", "cri-tools", "kubernetes-cni"):
        assert f"Depends: {dep}\n" in depends, (dep, depends)
    for dep in ("iptables", "conntrack", "socat", "ethtool", "ebtables"):
        assert f"Depends: <{dep}>\n" in depends, (dep, depends)


def test_a_release_signed_by_another_key_is_refused(repo, tmp_path):
    """What the signature protects: a Release changed after signing fails
    gpgv, and apt refuses the repository."""
    (tmp_path / "r").mkdir()
    copy = tmp_path / "r"
    for f in repo.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    (copy / "InRelease").write_text((copy / "InRelease").read_text().replace("hakube Kubernetes packages",
                                                                             "hakube Kubernetes packagez"))
    (copy / "Release.gpg").unlink()
    with pytest.raises(AssertionError, match="BADSIG|not signed|invalid|NO_PUBKEY|verif"):
        apt(tmp_path / "apt", copy, "update")


def test_each_package_holds_the_binaries_units_and_plugins_a_kubeadm_node_uses(repo):
    contents = {}
    for deb in repo.glob("*.deb"):
        listing = subprocess.run(["dpkg-deb", "-c", str(deb)], check=True, capture_output=True, text=True).stdout
        contents[deb.name.split("_")[0]] = {line.split()[-1].lstrip(".") for line in listing.splitlines()
                                            if not line.startswith("d")}
    assert contents["kubeadm"] == {"/usr/bin/kubeadm", "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf"}
    assert contents["kubelet"] == {"/usr/bin/kubelet", "/usr/lib/systemd/system/kubelet.service"}
    assert contents["kubectl"] == {"/usr/bin/kubectl"}
    assert contents["cri-tools"] == {"/usr/bin/crictl"}
    assert contents["kubernetes-cni"] == {f"/opt/cni/bin/{b}" for b in ("bridge", "host-local", "loopback",
                                                                        "portmap")}
