"""The lab suite's fixture: one lab for the whole suite, brought up by the
program's own graph, torn down at the end (and checked to leave nothing)."""
from __future__ import annotations

import os
import shutil
import time

import pytest

from tests.harness import ROOT

from .lab import HOSTS_DIR, Lab, sh

TIMINGS: dict[str, float] = {}
LOG = ROOT / ".lab" / "lab-run.log"      # every step with its timing, for a failed run


def lab_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    for tool in ("systemd-nspawn", "debootstrap", "ssh", "ip"):
        if shutil.which(tool) is None:
            return f"the lab needs {tool} (.ci/run installs it)"
    return None


def lab_fixture(label: str, overrides: dict | None = None, offsite: bool = False):
    """One lab per test module (module scope: two labs never overlap, they
    share the bridge and addresses)."""
    why = lab_unavailable()
    if why:
        pytest.skip(why)
    t0 = time.monotonic()
    LOG.parent.mkdir(parents=True, exist_ok=True)
    log = open(LOG, "a", buffering=1)
    lab = Lab(log=lambda line: print(line, file=log), overrides=overrides, offsite=offsite)
    try:
        lab.up()
    except Exception:
        lab.down()          # hosts, links and the release server: the next module starts clean
        raise
    TIMINGS[f"{label}: bring-up (program run 1, {len(lab.mocks.steps)} steps)"] = lab.timings["bring_up"]
    TIMINGS[f"{label}: image (build or cache)"] = lab.timings["image"]
    if "offsite_store" in lab.timings:
        TIMINGS[f"{label}: off-host store (SFTP host) boot"] = lab.timings["offsite_store"]
    yield lab
    t1 = time.monotonic()
    problems = lab.down()
    TIMINGS[f"{label}: teardown"] = time.monotonic() - t1
    TIMINGS[f"{label}: everything"] = time.monotonic() - t0
    left = sh("pgrep", "-f", "systemd-nspawn", check=False).stdout.split()
    links = [l for l in sh("ip", "-o", "link", "show").stdout.splitlines() if ": hk" in l]
    assert not problems and not left and not links and not any(HOSTS_DIR.glob("*")), \
        f"teardown left: {problems} nspawn={left} links={links}"


@pytest.fixture(scope="module")
def lab():
    """The lab stack, copying its snapshots to an SFTP store on a lab host of its own."""
    yield from lab_fixture("lab", offsite=True)


@pytest.fixture(scope="module")
def lab_day2():
    """Day two: a 3-member cluster on etcd 3.5.31 (upgraded to 3.5.33, 3.6 and 3.7,
    grown to 5 and shrunk to 3 by the tests), one control plane. Backups off:
    the scenarios count restarts and PIDs."""
    yield from lab_fixture("day two lab", {
        # the smallest quota hakube allows, so NOSPACE is reachable; defragment from 1 MiB
        "etcd": {"version": "3.5.31", "backup": {"enabled": False}, "quotaBackendBytes": 64 * 1024**2,
                 "maintenance": {"defragMinBytes": 1024**2}},
        "nodes": {"controlPlane": {"count": 1}},
    })


def pytest_sessionstart(session):
    if LOG.exists():
        LOG.unlink()


def pytest_configure(config):
    config.addinivalue_line("markers", "lab: runs against the lab's real hosts (needs root)")


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.section("lab timings")
        for what, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{what:66} {seconds:7.1f} s")
