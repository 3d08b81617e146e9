"""Every kubeadm config hakube renders, read by the real kubeadm of each minor
`make tools` builds (`kubeadm config validate`): init, a control plane's
join and a worker's join; each stack file in the repo, in bootstrap and in
practice mode (the learner's /root/kubeadm.yaml is the same init file); with
encryption at rest, the audit log and an image repository set.

kubeadm's answer must be `ok` and nothing else: a warning fails the test
unless EXPECTED_WARNINGS names it and says why. Minors that `make tools`
does not build are skipped, and the skip says so; a release it should have
built and did not fails.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from components.kubernetes import payloads as kp
from config import load, raw_from_stack_file, versions
from tests.conftest import ROOT
from tests.tools import kubernetes_release

pytestmark = pytest.mark.tools
STACKS = sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))
# Well-formed join credentials ([a-z0-9]{6}.[a-z0-9]{16}, sha256 of a CA's
# public key): validation reads their shape, not their truth.
CREDENTIALS = {"token": "abcdef.0123456789abcdef", "caCertHash": "sha256:" + "0" * 64}
# kubeadm's warnings that are expected, each with the reason it is left.
EXPECTED_WARNINGS: dict[str, str] = {}
BUILT = kubernetes_release.built("kubeadm")
WRAPPED = kubernetes_release.wrapped_versions()


def variants(stack: str) -> list[tuple[str, dict]]:
    """(name, edit of the raw kubernetes section) for one stack."""
    out = [("bootstrap", {"bootstrap": True}), ("practice", {"bootstrap": False})]
    if stack == "dev":
        out += [("bootstrap-no-encryption", {"bootstrap": True, "encryption": {"enabled": False}}),
                ("bootstrap-audit-images", {"bootstrap": True, "audit": {"enabled": True},
                                            "imageRepository": "registry.example.internal:5000/k8s"}),
                ("practice-images", {"bootstrap": False, "imageRepository": "registry.example.internal/mirror"}),
                ("bootstrap-cgroup-v1", {"bootstrap": True, "allowCgroupV1": True}),
                ("bootstrap-conntrack", {"bootstrap": True, "kubeProxy": {"conntrackMaxPerCore": 0}})]
    return out


def rendered(version: str) -> list[tuple[str, str]]:
    """(name, file) of every kubeadm config hakube renders at `version`."""
    out = []
    for stack in STACKS:
        for name, edit in variants(stack):
            raw = raw_from_stack_file(ROOT / f"Pulumi.{stack}.yaml")
            raw["kubernetes"] = {**raw.get("kubernetes", {}), **edit, "version": version}
            if not raw.get("nodes", {}).get("workers", {}).get("count"):
                raw.setdefault("nodes", {})["workers"] = {"count": 1}   # a worker's join too
            spec = load(raw, stack)
            cps, workers = spec.topology.control_planes, spec.topology.workers
            out.append((f"{stack}-{name}-init", kp.init_config_yaml(spec, cps[0])))
            if len(cps) > 1:
                out.append((f"{stack}-{name}-join-control-plane",
                            kp.join_config_yaml(spec, cps[1], CREDENTIALS, control_plane=True)))
            out.append((f"{stack}-{name}-join-worker",
                        kp.join_config_yaml(spec, workers[0], CREDENTIALS, control_plane=False)))
    return out


def validate(kubeadm: Path, text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    f = tmp_path / "kubeadm.yaml"
    f.write_text(text)
    return subprocess.run([str(kubeadm), "config", "validate", "--config", str(f)],
                          capture_output=True, text=True, timeout=60)


def unexpected(res: subprocess.CompletedProcess) -> list[str]:
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip() and ln.strip() != "ok"]
    return [ln for ln in lines if not any(w in ln for w in EXPECTED_WARNINGS)]


def test_make_tools_built_each_kubeadm_it_wraps():
    """Each tools/kubernetes/v<version>/ wrapper's kubeadm is here: the test
    below would otherwise skip a release CI means to check."""
    assert WRAPPED, "tools/kubernetes has no wrapper module"
    missing = [v for v in WRAPPED if v not in BUILT]
    assert not missing, f"kubeadm {', '.join(missing)} not built: run `make tools`"
    assert {int(v.split(".")[1]) for v in WRAPPED} >= {int(versions.KUBERNETES_DEFAULT.split(".")[1]),
                                                        max(versions.KUBERNETES)}


@pytest.mark.parametrize("minor", sorted(versions.KUBERNETES), ids=lambda m: f"1.{m}")
def test_real_kubeadm_accepts_every_rendered_config(minor, tmp_path):
    builds = [v for v in BUILT if v.startswith(f"1.{minor}.")]
    if not builds:
        pytest.skip(f"kubeadm 1.{minor} is not built by `make tools` (it builds "
                    f"{', '.join(WRAPPED) or 'none'}): 1.{minor}'s configs are checked against "
                    "kubeadm's documented fields only (test_render_kubernetes.py)")
    version = builds[-1]
    refused = {}
    configs = rendered(version)
    for name, text in configs:
        res = validate(BUILT[version], text, tmp_path)
        if res.returncode != 0 or unexpected(res):
            refused[name] = (res.stdout + res.stderr).strip()
    assert not refused, f"kubeadm {version} refused or warned about {len(refused)} of {len(configs)} configs:\n" + \
        "\n".join(f"- {name}: {out}" for name, out in refused.items())


@pytest.mark.skipif(not BUILT, reason="no kubeadm built by `make tools`")
def test_kubeadm_refuses_a_file_whose_first_part_has_no_kind(tmp_path):
    """The test above can fail: a lone comment before the first `---` (what
    hakube once rendered) is a part with no kind, and kubeadm refuses the
    whole file."""
    spec = load(raw_from_stack_file(ROOT / "Pulumi.dev.yaml"), "dev")
    good = kp.init_config_yaml(spec, spec.topology.control_planes[0])
    res = validate(next(iter(BUILT.values())), "# a header\n---\n" + good.split("\n", 1)[1], tmp_path)
    assert res.returncode != 0 and "kind and apiVersion is mandatory" in res.stderr, res


@pytest.mark.skipif(not BUILT, reason="no kubeadm built by `make tools`")
def test_the_pause_image_containerd_gets_is_the_one_kubeadm_names():
    """containerd's sandbox image (the containerd step, payloads.pause_image)
    is what each built kubeadm lists for its release, with and without an
    image repository: the row of versions.KUBERNETES is kubeadm's own."""
    for version, kubeadm in BUILT.items():
        minor = int(version.split(".")[1])
        for repo in ("", "registry.example.internal:5000/k8s"):
            raw = raw_from_stack_file(ROOT / "Pulumi.dev.yaml")
            raw["kubernetes"] = {"version": version, **({"imageRepository": repo} if repo else {})}
            spec = load(raw, "dev")
            args = ["--kubernetes-version", f"v{version}"] + (["--image-repository", repo] if repo else [])
            res = subprocess.run([str(kubeadm), "config", "images", "list", *args], capture_output=True, text=True,
                                 timeout=60)
            assert res.returncode == 0, res.stderr
            pause = [line for line in res.stdout.split() if "/pause:" in line]
            assert pause == [kp.pause_image(spec)], (version, repo, res.stdout)
            assert versions.pause_version(minor) == pause[0].rsplit(":", 1)[1]


@pytest.mark.skipif(not BUILT, reason="no kubeadm built by `make tools`")
def test_the_reset_phases_hakube_skips_are_phases_of_each_kubeadm():
    """hakube's `kubeadm reset` skips the stacked-etcd phase (common.sh
    kubeadm_reset): every phase it names is one of the phases `kubeadm reset`
    of each built release runs, as its help lists them."""
    common = (ROOT / "components" / "steps" / "common.sh").read_text()
    skipped = {p for m in re.findall(r"kubeadm reset -f --skip-phases=(\S+)", common) for p in m.split(",")}
    assert skipped, "common.sh no longer skips a reset phase: drop this test with it"
    for version, kubeadm in BUILT.items():
        res = subprocess.run([str(kubeadm), "reset", "--help"], capture_output=True, text=True, timeout=60)
        table = res.stdout.split('The "reset" command executes the following phases:', 1)[1].split("\n\n")[0]
        phases = {line.split()[0] for line in table.splitlines() if line.strip() and not line.startswith("```")}
        assert skipped <= phases, (version, phases)
        assert "--skip-phases" in res.stdout, version
