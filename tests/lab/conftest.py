"""The lab suite's fixtures: one lab per test module, brought up by the
program's own graph, torn down at the module's end (and checked to leave
nothing). Each module's lab has a slot of its own (hosts.Slot: bridge,
addresses, hosts), so `make test` runs the modules side by side, one per
pytest-xdist worker (--dist loadfile)."""
from __future__ import annotations

import os
import shutil
import time

import pytest

from tests.harness import ROOT

from .lab import Lab, left_behind

TIMINGS: dict[str, float] = {}
# every step of the slot's lab with its timing, for a failed run
LOGS = ROOT / ".lab"
# Each module's slot; the longest module first, so that with fewer workers
# than modules the shorter ones share a worker.
MODULE_SLOTS = {"test_lab.py": 0, "test_day_two.py": 1, "test_kubernetes.py": 2}


def lab_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    for tool in ("systemd-nspawn", "debootstrap", "ssh", "ip"):
        if shutil.which(tool) is None:
            return f"the lab needs {tool} (.ci/run installs it)"
    return None


def lab_fixture(label: str, slot: int, overrides: dict | None = None, offsite: bool = False):
    """One lab per test module, in its own slot (module scope), its program
    run by the real Pulumi engine (realrun.py)."""
    why = lab_unavailable()
    if why:
        pytest.skip(why)
    t0 = time.monotonic()
    LOGS.mkdir(parents=True, exist_ok=True)
    log = open(LOGS / f"lab-run-{slot}.log", "w", buffering=1)
    lab = Lab(log=lambda line: print(line, file=log), overrides=overrides, offsite=offsite, slot=slot)
    try:
        lab.up()
    except Exception:
        lab.down()          # hosts, links and the release server: the next module starts clean
        raise
    TIMINGS[f"{label}: bring-up (program run 1, {len(lab.mocks.steps)} steps)"] = lab.timings["bring_up"]
    t1 = time.monotonic()
    try:
        lab.settled()           # the bring-up left what the config says: a preview proposes nothing
    except Exception:
        lab.down()
        raise
    TIMINGS[f"{label}: pulumi preview --expect-no-changes after the bring-up"] = time.monotonic() - t1
    TIMINGS[f"{label}: image (build or cache)"] = lab.timings["image"]
    if "offsite_store" in lab.timings:
        TIMINGS[f"{label}: off-host store (SFTP host) boot"] = lab.timings["offsite_store"]
    yield lab
    t1 = time.monotonic()
    problems = lab.down()
    TIMINGS[f"{label}: teardown"] = time.monotonic() - t1
    if lab.real is not None:
        for op, (n, wall, engine, cpu) in lab.real.cost().items():
            TIMINGS[f"{label}: pulumi {op}, {n} runs (wall)"] = wall
            TIMINGS[f"{label}: pulumi {op}, {n} runs, no provider acting"] = engine
            TIMINGS[f"{label}: pulumi {op}, {n} runs, CPU of driver, CLI and plugins"] = cpu
    TIMINGS[f"{label}: everything"] = time.monotonic() - t0
    left = left_behind(lab.slot)
    assert not problems and not left, f"teardown left: {problems} {left}"


@pytest.fixture(scope="module")
def lab():
    """The lab stack, copying its snapshots to an SFTP store on a lab host of its own."""
    yield from lab_fixture("lab", MODULE_SLOTS["test_lab.py"], offsite=True)


@pytest.fixture(scope="module")
def lab_day2():
    """Day two: a 3-member cluster on etcd 3.5.31 (upgraded to 3.5.33, 3.6 and 3.7,
    grown to 5 and shrunk to 3 by the tests), one control plane. Backups off:
    the scenarios count restarts and PIDs."""
    yield from lab_fixture("day two lab", MODULE_SLOTS["test_day_two.py"], {
        # the smallest quota hakube allows, so NOSPACE is reachable; defragment from 1 MiB
        "etcd": {"version": "3.5.31", "backup": {"enabled": False}, "quotaBackendBytes": 64 * 1024**2,
                 "maintenance": {"defragMinBytes": 1024**2}},
        "nodes": {"controlPlane": {"count": 1}},
    })


def pytest_configure(config):
    config.addinivalue_line("markers", "lab: runs against the lab's real hosts (needs root)")


def pytest_collection_modifyitems(config, items):
    """The modules in MODULE_SLOTS' order (the longest first): pytest-xdist's
    loadfile hands the files out in the order collected."""
    order = list(MODULE_SLOTS)
    items.sort(key=lambda item: order.index(item.path.name) if item.path.name in order else len(order))


def pytest_sessionfinish(session):
    """A pytest-xdist worker sends its labs' figures to the controller."""
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["lab_timings"] = dict(TIMINGS)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    TIMINGS.update(getattr(node, "workeroutput", {}).get("lab_timings", {}))


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.section("lab timings")
        for what, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{what:66} {seconds:7.1f} s")
