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


def _cert(tmp_path: Path, name: str, days: int) -> Path:
    out = tmp_path / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tmp_path / f"{name}.key"), "-out", str(out), "-days", str(days),
                    "-subj", f"/O=hakube/CN={name}"], check=True, capture_output=True)
    return out


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed (.ci/run installs it)")
def test_the_cert_check_fails_naming_a_certificate_inside_its_window_and_the_remedy(tmp_path):
    """The script hakube-cert-check's timer runs, as cert_check renders it,
    against real certificates: one expiring in 2 days with a 3-day window
    fails, naming the file, its subject, the date and `pulumi up`; kubeadm's
    own name `kubeadm certs renew`; all far from expiry pass."""
    near, far, kubeadm = _cert(tmp_path, "near", 2), _cert(tmp_path, "far", 400), _cert(tmp_path, "kubeadm", 2)
    _, script = steps.cert_check("dev", 3, "daily", [str(near), str(far)], [str(tmp_path / "kube*.crt")])
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    assert any(str(near) in x and "CN=near,O=hakube" in x and re.search(r"in (1 day|2 days) ", x)
               and "`pulumi up` of stack dev" in x for x in lines), res.stderr
    assert any(str(kubeadm) in x and "kubeadm certs renew all" in x for x in lines), res.stderr
    assert not any(str(far) in x for x in lines) and "2 of 3 certificates" in res.stderr
    _, script = steps.cert_check("dev", 3, "daily", [str(far)])
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert res.returncode == 0 and "1 certificates" in res.stdout and "more than 3 days" in res.stdout


KUBECTL = """#!/bin/bash
# a stand-in kubectl: `get nodes` prints $NODES_LISTED (lines "name status"); the rest succeeds quietly
case "$*" in
  *"get pods"*) exit 0 ;;
  *"get nodes"*) [ "$*" = "get nodes -o wide" ] && exit 0; printf '%b' "$NODES_LISTED" ;;
  *) exit 0 ;;
esac
"""


def _run_check(tmp_path: Path, script: str, values: dict, listed: str):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "kubectl").write_text(KUBECTL)
    (bin_dir / "kubectl").chmod(0o755)
    body = steps.prelude(values) + LIBS["common.sh"].read_text() + (COMPONENTS / "kubernetes" / script).read_text()
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "NODES_LISTED": listed, "POLL_SECONDS": "0"}
    return subprocess.run(["bash", "-c", body], capture_output=True, text=True, env=env)


def test_the_kubernetes_checks_count_the_configured_nodes_by_name(tmp_path):
    """Shrinking 3 -> 2 control planes: master-03 is still listed (its VM goes
    after the checks) and Ready; both checks pass on the two configured and
    name the third as not in the stack. A configured node NotReady fails,
    named."""
    listed = "master-01 Ready 1d\\nmaster-02 Ready 1d\\nmaster-03 Ready 1d\\n"
    verify = _run_check(tmp_path, "verify.sh", {"CONTROL_PLANES": "master-01 master-02", "CHECK_NAMESPACE": "x"},
                        listed)
    assert verify.returncode == 0, verify.stderr
    assert "also listed, not in the stack: master-03" in verify.stdout
    ready = _run_check(tmp_path, "nodes-ready.sh", {"NODES": "master-01 master-02"}, listed)
    assert ready.returncode == 0, ready.stderr
    down = "master-01 Ready 1d\\nmaster-02 NotReady 1d\\n"
    verify = _run_check(tmp_path, "verify.sh", {"CONTROL_PLANES": "master-01 master-02", "CHECK_NAMESPACE": "x"},
                        down)
    assert verify.returncode == 1 and "control planes not Ready: master-02" in verify.stderr
    ready = _run_check(tmp_path, "nodes-ready.sh", {"NODES": "master-01 master-02 worker-01"}, down)
    assert ready.returncode == 1 and "master-02 worker-01" in ready.stderr
