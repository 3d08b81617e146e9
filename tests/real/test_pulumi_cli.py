"""The real Pulumi CLI (built from its Go module by `make tools`) reading
hakube's project and stack files the way `pulumi up` does.

What the program sees at run time is the CLI's view of the stack's config;
`make check-config`, `make review` and the lab read the stack file
themselves (config/stackfile.py). These tests hold the two equal on every
shipped stack, and on a stack where the CLI itself wrote a secret."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from config import load_stack_file, raw_from_stack_file
from config.spec import NAMESPACE
from tests.conftest import ROOT

PULUMI = ROOT / ".tools" / "bin" / "pulumi"
STACKS = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))

pytestmark = pytest.mark.tools


@pytest.fixture
def project(tmp_path):
    """A copy of the project files with a file backend of its own; returns a
    function running the real CLI in it."""
    for f in ["Pulumi.yaml", *(f"Pulumi.{s}.yaml" for s in STACKS)]:
        shutil.copy(ROOT / f, tmp_path / f)
    (tmp_path / "state").mkdir()
    env = {"PATH": f"{PULUMI.parent}:{os.environ['PATH']}", "HOME": str(tmp_path),
           "PULUMI_HOME": str(tmp_path / "pulumi-home"), "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}",
           "PULUMI_CONFIG_PASSPHRASE": "hakube-test", "PULUMI_SKIP_UPDATE_CHECK": "1",
           "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "1"}

    def pulumi(*args, stdin: str | None = None) -> str:
        res = subprocess.run([str(PULUMI), "--non-interactive", *args], cwd=tmp_path, env=env, input=stdin,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, f"pulumi {' '.join(args)}: {res.stderr}"
        return res.stdout
    pulumi.dir = tmp_path
    return pulumi


def test_the_cli_is_the_version_the_wrapper_pins_and_lists_plugins(project):
    pinned = re.search(r"github.com/pulumi/pulumi/pkg/v3 (v\S+)", (ROOT / "tools/pulumi/go.mod").read_text()).group(1)
    assert project("version").strip() == pinned
    assert project("plugin", "ls").startswith("NAME")


def cli_view(pulumi, stack: str) -> dict:
    pulumi("stack", "init", stack)
    seen = json.loads(pulumi("config", "--stack", stack, "--json"))
    out = {}
    for key, entry in seen.items():
        ns, _, name = key.partition(":")
        assert ns == NAMESPACE, key
        out[name] = entry["objectValue"] if "objectValue" in entry else entry.get("value")
    return out


@pytest.mark.parametrize("stack", STACKS)
def test_each_stack_file_reads_the_same_to_the_cli_and_to_hakube(project, stack):
    assert cli_view(project, stack) == raw_from_stack_file(ROOT / f"Pulumi.{stack}.yaml")


def test_a_secret_the_cli_writes_keeps_the_stack_loadable_and_stays_opaque(project, tmp_path):
    key = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")],
                         capture_output=True)
    assert key.returncode == 0
    private = (tmp_path / "k").read_text()
    public = (tmp_path / "k.pub").read_text().strip()
    cli_view(project, "dev")
    project("config", "set", "--stack", "dev", "--secret", f"{NAMESPACE}:sshPrivateKey", stdin=private)
    project("config", "set", "--stack", "dev", "--path", f"{NAMESPACE}:ssh.publicKey", public)
    spec = load_stack_file(project.dir, "dev")
    assert spec.ssh.public_key == public
    raw = raw_from_stack_file(project.dir / "Pulumi.dev.yaml")
    assert set(raw["sshPrivateKey"]) == {"secure"} and "PRIVATE KEY" not in json.dumps(raw)
    # and the engine hands the program the key itself
    assert project("config", "get", "--stack", "dev", f"{NAMESPACE}:sshPrivateKey").strip() == private.strip()
