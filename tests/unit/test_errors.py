"""What a person sees when a make target is given something wrong: the
problem and what to do, never a Python traceback."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.harness import ROOT


def run(*argv: str, cwd=ROOT, stdin: str = "", env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", *argv], cwd=cwd, input=stdin, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=120)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return proc


def test_check_config_of_a_stack_with_no_file_lists_the_stacks():
    proc = run("config.check", "nosuch")
    assert proc.returncode == 2
    assert "no Pulumi.nosuch.yaml" in proc.stderr and "the stacks are: cka, dev, lab, minimal" in proc.stderr


def test_check_config_of_a_file_that_is_not_yaml_names_the_file_and_line(tmp_path):
    (tmp_path / "Pulumi.bad.yaml").write_text("config:\n  hakube:nodes: [\n")
    proc = run("config.check", "bad", cwd=tmp_path)
    assert proc.returncode == 2
    assert 'Pulumi.bad.yaml is not valid YAML' in proc.stderr and 'in "Pulumi.bad.yaml", line 3' in proc.stderr


def test_check_config_lists_every_problem_by_key_path(tmp_path):
    (tmp_path / "Pulumi.bad.yaml").write_text("config:\n  hakube:nodes:\n    etcd:\n      count: 2\n  hakube:bogus: 1\n")
    proc = run("config.check", "bad", cwd=tmp_path)
    assert proc.returncode == 2
    assert "hakube:nodes.etcd.count: 2 members" in proc.stderr and "hakube:bogus: unknown key" in proc.stderr


def test_review_against_a_ref_that_does_not_exist_says_what_git_said():
    proc = run("review", "--base", "v0.0-no-such-tag")
    assert proc.returncode != 0
    assert "BASE=v0.0-no-such-tag is not a commit" in proc.stderr and "not a valid object name" in proc.stderr


def test_review_of_a_stack_with_no_file_lists_the_stacks():
    proc = run("review", "--stack", "nosuch")
    assert proc.returncode != 0 and "the stacks are: cka, dev, lab, minimal" in proc.stderr


@pytest.mark.parametrize("printed, says", [
    ("", "the stack has no outputs"),
    ("error: no stack named 'dev' found\n", "no stack named 'dev' found"),
    ('{"vip": "10.0.0.1"}', "lack nodeIps, sshUser, sshPrivateKey, knownHosts"),
])
def test_status_without_a_stack_that_ran_says_to_run_make_up(printed, says):
    proc = run("ops.status", "--outputs", "-", "--stack", "dev", stdin=printed)
    assert proc.returncode == 2
    assert says in proc.stderr and "run `make up` for it first" in proc.stderr


def test_make_up_without_virsh_says_how_to_get_libvirt_or_what_runs_without(tmp_path):
    proc = run("ops.hostcheck", "dev", env={"PATH": str(tmp_path)})
    assert proc.returncode == 2
    assert "virsh is not on PATH" in proc.stderr and "apt install libvirt-clients" in proc.stderr
    assert "make review" in proc.stderr and "make lab" in proc.stderr


def test_make_up_with_a_libvirt_host_that_refuses_quotes_virsh(tmp_path):
    virsh = tmp_path / "virsh"
    virsh.write_text("#!/bin/sh\necho 'error: failed to connect to the hypervisor' >&2\nexit 1\n")
    virsh.chmod(0o755)
    proc = run("ops.hostcheck", "dev", env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert proc.returncode == 2
    assert "virsh said: error: failed to connect to the hypervisor" in proc.stderr
    assert "systemctl start libvirtd" in proc.stderr


def test_make_up_goes_on_when_libvirt_answers(tmp_path):
    virsh = tmp_path / "virsh"
    virsh.write_text("#!/bin/sh\necho qemu:///system\n")
    virsh.chmod(0o755)
    assert run("ops.hostcheck", "dev", env={"PATH": f"{tmp_path}:/usr/bin:/bin"}).returncode == 0
