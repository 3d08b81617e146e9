"""Every shipped shell script, as the node runs it (not the `sudo bash -c`
wrapper around it): `bash -n` parses it, and `shellcheck -S warning` finds
nothing in it with the helpers it sources inlined (so their variables and
functions count as used)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from components import steps

COMPONENTS = Path(steps.__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in COMPONENTS.rglob("*.sh"))
LIBS = {name: path for name, path in steps.LIBS.items()}
REFERENCED = re.compile(r"\$\{?([A-Z][A-Z0-9_]*)\b")
ASSIGNED = re.compile(r"^\s*(?:local |declare -A |export )?([A-Z][A-Z0-9_]*)=", re.M)


def values_for(text: str) -> dict:
    """A stand-in value for each UPPER_CASE variable a script reads and no
    helper or the script itself assigns: what its step's prelude provides."""
    libs = "".join(p.read_text() for p in LIBS.values())
    return {n: "x" for n in set(REFERENCED.findall(text)) - set(ASSIGNED.findall(text + libs))}


def test_every_script_is_found():
    names = {steps.step_name(p) for p in SCRIPTS}
    assert {"etcd/start.sh", "etcd/restart.sh", "etcd/restore/data.sh", "steps/helpers.sh",
            "kubernetes/apiserver-restart.sh", "loadbalancer/haproxy.sh"} <= names


@pytest.mark.parametrize("path", SCRIPTS, ids=steps.step_name)
def test_the_script_a_node_runs_parses(path: Path):
    body = steps.step_body(path, values_for(path.read_text()), libs=["etcd.sh"])
    res = subprocess.run(["bash", "-n"], input=body, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_bash_n_sees_a_broken_step(tmp_path):
    """The check above fails on a syntax error inside a step (the old one,
    which parsed only the quoted wrapper, did not)."""
    broken = tmp_path / "broken.sh"
    broken.write_text("if true; then\n  echo unfinished\n")
    body = steps.prelude({}) + broken.read_text()
    assert subprocess.run(["bash", "-n"], input=body, capture_output=True, text=True).returncode != 0
    wrapped = steps.sudo_bash(body)
    assert subprocess.run(["bash", "-n", "-c", wrapped], capture_output=True, text=True).returncode == 0


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (.ci/run installs it)")
@pytest.mark.parametrize("path", SCRIPTS, ids=steps.step_name)
def test_shellcheck_finds_no_warning(path: Path):
    text = path.read_text()
    body = steps.prelude(values_for(text)) + "".join(p.read_text() for p in LIBS.values()) + text
    res = subprocess.run(["shellcheck", "-S", "warning", "-s", "bash", "-e", "SC1090,SC1091", "-"],
                         input=body, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout
