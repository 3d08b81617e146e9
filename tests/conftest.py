"""The suite's tiers and its profile.

`make test-fast` (HAKUBE_TIER=fast) runs the unit and graph tiers with no
Go build, no root and no lab: a test marked `tools` (it needs what `make
tools` builds: etcd releases, kubeadm, the Pulumi CLI) is skipped, saying
so. `make test` runs every tier, and there a missing build fails the tests
that need it instead of skipping them.

Every run ends with the same profile, so that two runs can be compared: the
seconds of each tier (setup, tests and teardown: a lab's bring-up counts in
its tier; summed over pytest-xdist's processes) and the run's wall time,
each lab module's bring-ups (tests/lab/conftest.py) and the ten slowest
tests (`--durations=10`, in the Makefile).
"""
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FAST = os.environ.get("HAKUBE_TIER") == "fast"
_TIERS: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
_SKIPPED_TOOLS: set[str] = set()
SKIP_REASON = "needs `make tools` (Go builds): `make test` runs it"
_STARTED = time.monotonic()


def pytest_configure(config):
    config.addinivalue_line("markers", "tools: needs binaries `make tools` builds from Go modules "
                                       "(skipped by `make test-fast`)")


# The longest modules first: pytest-xdist's loadfile (with
# --no-loadscope-reorder, Makefile) hands modules to its processes in the
# order collected, so one that starts last cannot hold up the run's end.
LONGEST_FIRST = ("tests/real/test_differential.py", "tests/unit/test_render_etcd.py")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    first = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: first.get(item.nodeid.split("::")[0], len(first)))
    if not FAST:
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if item.get_closest_marker("tools"):
            item.add_marker(skip)


def _tier(nodeid: str) -> str:
    parts = nodeid.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tests" else parts[0]


def pytest_runtest_logreport(report):
    """Every report reaches the process that prints the summary (with
    pytest-xdist, the controller), so counting happens here."""
    t = _TIERS[_tier(report.nodeid)]
    t[0] += report.duration
    if report.when == "call":
        t[1] += 1
    if report.skipped and SKIP_REASON in str(report.longrepr):
        _SKIPPED_TOOLS.add(report.nodeid)


def pytest_terminal_summary(terminalreporter):
    tr = terminalreporter
    if _TIERS:
        tr.section("profile: seconds per tier (setup, tests, teardown; summed over processes)")
        for tier, (secs, n) in sorted(_TIERS.items()):
            tr.write_line(f"{tier:8} {n:5d} tests {secs:8.1f} s")
        tr.write_line(f"{'all':8} {sum(n for _, n in _TIERS.values()):5d} tests "
                      f"{sum(s for s, _ in _TIERS.values()):8.1f} s, in {time.monotonic() - _STARTED:.1f} s of wall time")
    if FAST:
        tr.section("test-fast: not run")
        tr.write_line(f"{len(_SKIPPED_TOOLS)} tests that need `make tools` builds (real etcd releases, "
                      "kubeadm, the Pulumi CLI), skipped; the real and lab tiers (tests/real, tests/lab: "
                      "the Pulumi CLI, real hosts as root): `make test` runs everything")
