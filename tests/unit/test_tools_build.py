"""`make tools`' cache: a warm machine builds nothing, and a change to a
wrapper, its flags or the Go version builds that tool again."""
from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import sys

import pytest

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("tools_build", ROOT / "tools" / "build.py")
build = importlib.util.module_from_spec(spec)
sys.modules["tools_build"] = build       # dataclasses look their module up
spec.loader.exec_module(build)


pytestmark = pytest.mark.tools    # Go itself, and the wrappers' builds


def test_every_wrapper_names_its_version_and_the_default_etcd_is_one_of_them():
    from config import versions
    tools = {t.name: t for t in build.tools()}
    assert f"etcd-v{versions.etcd_default()}" in tools
    assert tools["pulumi"].version == build.required_version(ROOT / "tools/pulumi", "github.com/pulumi/pulumi/pkg/v3")[1:]


def test_the_cache_key_follows_the_wrapper_the_flags_and_go(tmp_path):
    tool = next(t for t in build.tools() if t.name.startswith("etcd-"))
    copy = tmp_path / "w"
    shutil.copytree(tool.wrapper, copy)
    mine = dataclasses.replace(tool, wrapper=copy)
    key = build.cache_key(mine, "go1.26.8")
    assert build.cache_key(mine, "go1.26.8") == key
    assert build.cache_key(mine, "go1.26.9") != key
    assert build.cache_key(dataclasses.replace(mine, ldflags=("-s",)), "go1.26.8") != key
    (copy / "go.sum").write_text((copy / "go.sum").read_text() + "\n")
    assert build.cache_key(mine, "go1.26.8") != key


def test_a_warm_cache_builds_nothing_and_links_what_it_has(tmp_path, monkeypatch, capsys):
    gover = build.go_version()
    for tool in build.tools():
        dest = tmp_path / "cache" / f"{tool.name}-{build.cache_key(tool, gover)}"
        (dest / "bin").mkdir(parents=True)
        for out in tool.packages:
            (dest / "bin" / out).write_text("#!/bin/sh\n")
        (dest / "tool.json").write_text("{}")
    monkeypatch.setattr(build, "build", lambda *a: (_ for _ in ()).throw(AssertionError("built on a warm cache")))
    assert build.main(["--cache", str(tmp_path / "cache"), "--bin", str(tmp_path / "t" / "bin")]) == 0
    assert "0 built" in capsys.readouterr().out
    assert (tmp_path / "t" / "bin" / "pulumi").resolve().parent.parent.parent == (tmp_path / "cache").resolve()
    assert any((tmp_path / "t" / "etcd").iterdir())
    for tool in build.tools():
        if tool.pack == "kubernetes":
            assert (tmp_path / "t" / "kubernetes" / f"v{tool.version}" / next(iter(tool.packages))).is_symlink()


def test_kubernetes_binaries_are_stamped_with_their_release():
    """Unstamped, kubeadm calls itself v0.0.0-master and refuses to work."""
    tools = {t.name: t for t in build.tools() if t.pack == "kubernetes"}
    wrapped = sorted(p.name for p in (ROOT / "tools" / "kubernetes").glob("v*"))
    assert sorted(n.split("-", 1)[1] for n in tools if n.startswith("kubeadm-")) == wrapped
    for tool in tools.values():
        flags = " ".join(tool.ldflags)
        for pkg in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
            assert f"-X {pkg}.gitVersion=v{tool.version} " in flags + " "
            assert f"-X {pkg}.gitMinor={tool.version.split('.')[1]} " in flags + " "


def test_a_wrapper_that_requires_only_the_server_builds_etcd_alone():
    """3.5.31: the proxy serves server/v3 at that tag but no etcdctl/etcdutl;
    its wrapper builds `etcd` and is no release tarball of its own."""
    tools = {t.name: t for t in build.tools()}
    assert set(tools["etcd-v3.5.31"].packages) == {"etcd"} and tools["etcd-v3.5.31"].pack == "etcd-server"
    assert set(tools["etcd-v3.5.33"].packages) == {"etcd", "etcdctl", "etcdutl"} and tools["etcd-v3.5.33"].pack == "etcd"
    assert "-X=go.etcd.io/etcd/api/v3/version.GitSHA=5ddacc1f" in tools["etcd-v3.5.31"].ldflags
