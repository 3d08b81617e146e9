"""The keepalived pair, in the lab stack with two load balancers: the VIP
sits on the preferred LB, moves when its HAProxy stops, and comes back."""
from __future__ import annotations

import datetime as dt
import re
import shlex
import subprocess
import time

import pytest

from .conftest import TIMINGS

pytestmark = pytest.mark.lab


def holds_vip(lab, node) -> bool:
    vip = lab.outputs["vip"]
    out = lab.sh(node, "ip -4 -o addr show dev eth0").stdout
    return f" {vip}/" in out


def wait_vip(lab, node, timeout=30.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if holds_vip(lab, node):
            return time.monotonic() - t0
        time.sleep(0.2)
    pytest.fail(f"{node} did not take the VIP within {timeout} s")


def vip_accepts(lab) -> bool:
    vip = lab.outputs["vip"]
    return lab.sh("master-01", f"timeout 3 bash -c 'exec 3<>/dev/tcp/{vip}/6443'").rc == 0


def test_vip_moves_when_haproxy_stops_on_the_active_load_balancer(lab_pair):
    lab = lab_pair
    assert holds_vip(lab, "lb-01") and not holds_vip(lab, "lb-02")
    assert vip_accepts(lab)
    assert lab.sh("lb-01", "sudo -n systemctl stop haproxy").rc == 0
    try:
        moved = wait_vip(lab, "lb-02")
        TIMINGS["keepalived: VIP moved to lb-02 after haproxy stopped on lb-01"] = moved
        assert not holds_vip(lab, "lb-01")
        assert vip_accepts(lab), "lb-02's HAProxy does not answer on the VIP"
    finally:
        assert lab.sh("lb-01", "sudo -n systemctl start haproxy").rc == 0
    back = wait_vip(lab, "lb-01")
    TIMINGS["keepalived: VIP back on lb-01 after haproxy returned"] = back
    deadline = time.monotonic() + 10
    while holds_vip(lab, "lb-02") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not holds_vip(lab, "lb-02"), "both load balancers hold the VIP"
    assert vip_accepts(lab)


PROBE = r"""
# a TCP connect to the VIP every 0.1 s: "<ms> ok|fail"
while [ ! -e /tmp/hakube-probe.stop ]; do
  if timeout 1 bash -c "exec 3<>/dev/tcp/$VIP/6443" 2>/dev/null; then r=ok; else r=fail; fi
  echo "$(date +%s%3N) $r"
  sleep 0.1
done
"""


class VipWatch:
    """Every add and delete of the VIP on each load balancer, timestamped by
    `ip -ts monitor` run from this machine inside the host's network
    namespace (so a host that is deleted meanwhile is still watched to its
    end); and from master-01 a TCP connect to the VIP every 0.1 s.
    Afterwards: how long two hosts held the VIP at once, and the probe's
    failures."""

    def __init__(self, lab, nodes):
        self.lab, self.nodes, self.vip = lab, nodes, lab.outputs["vip"]
        self.watchers: dict[str, subprocess.Popen] = {}

    def __enter__(self):
        self.held = {n: holds_vip(self.lab, n) for n in self.nodes}
        for node in self.nodes:
            leader = self.lab.mocks.hosts[f"hakube-lab-{node}"].leader
            self.watchers[node] = subprocess.Popen(
                ["nsenter", "-t", leader, "-n", "ip", "-ts", "-o", "monitor", "address"],
                stdout=subprocess.PIPE, text=True)
        assert self.lab.sh("master-01", "rm -f /tmp/hakube-probe.log /tmp/hakube-probe.stop; "
                                        f"VIP={self.vip} setsid nohup bash -c {shlex.quote(PROBE)} "
                                        "> /tmp/hakube-probe.log 2>&1 < /dev/null &").rc == 0
        time.sleep(1)
        return self

    def __exit__(self, *exc):
        time.sleep(1)
        self.lab.sh("master-01", "touch /tmp/hakube-probe.stop")
        self.log = {}
        for node, proc in self.watchers.items():
            proc.terminate()
            self.log[node] = proc.communicate(timeout=10)[0]
        time.sleep(0.5)
        self.probe = [line.split() for line in
                      self.lab.sh("master-01", "cat /tmp/hakube-probe.log").stdout.splitlines() if line]
        return False

    def events(self, node) -> list[tuple[float, bool]]:
        """(seconds since the epoch, held afterwards) for each change of the VIP on `node`."""
        events = []
        for line in self.log[node].splitlines():
            m = re.match(r"\[(\d{4}-\d\d-\d\dT[\d:.]+)\]\s*(Deleted)?", line)
            if m and f" {self.vip}/" in line:
                events.append((dt.datetime.fromisoformat(m.group(1)).timestamp(), m.group(2) is None))
        return events

    def overlap_seconds(self) -> float:
        """How long two hosts held the VIP at once."""
        timeline = sorted((t, n, held) for n in self.nodes for t, held in self.events(n))
        state = dict(self.held)
        both, since = 0.0, None
        for t, n, held in timeline:
            state[n] = held
            if sum(state.values()) > 1 and since is None:
                since = t
            elif sum(state.values()) <= 1 and since is not None:
                both, since = both + t - since, None
        return both if since is None else float("inf")

    def failures(self) -> int:
        return sum(1 for _, r in self.probe if r != "ok")


def test_two_to_one_to_two_load_balancers_keeps_the_vip_answering_on_one_host(lab_pair):
    """nodes.loadBalancer.count 2 -> 1 -> 2 under a probe of the VIP: lb-02
    leaves (its keepalived stopped before its VM goes) and comes back as
    backup; the VIP stays on lb-01, answering every probe, and is never
    held by two hosts."""
    lab = lab_pair
    assert holds_vip(lab, "lb-01")
    with VipWatch(lab, ["lb-01", "lb-02"]) as watch:
        t0 = time.monotonic()
        lab.raw["nodes"] = {**lab.raw["nodes"], "loadBalancer": {"count": 1}}
        run = lab.apply()
        TIMINGS["load balancers 2 -> 1: program run"] = time.monotonic() - t0
        assert "hakube-lb-lb-02-keepalived-leave" in [r.name for r in run.deleted]
        assert "hakube-lab-lb-02" not in lab.mocks.hosts
    assert watch.failures() == 0 and len(watch.probe) > 10, watch.probe[-5:]
    assert watch.overlap_seconds() == 0 and holds_vip(lab, "lb-01")
    assert not [e for e in watch.events("lb-02") if e[1]], "lb-02 took the VIP while leaving"
    with VipWatch(lab, ["lb-01"]) as watch:
        t0 = time.monotonic()
        lab.raw["nodes"] = {**lab.raw["nodes"], "loadBalancer": {"count": 2}}
        since = len(lab.mocks.steps)
        lab.apply()
        TIMINGS["load balancers 1 -> 2: program run"] = time.monotonic() - t0
        assert not [s for s in lab.mocks.steps[since:] if s.name == "hakube-lb-lb-01-keepalived"]
        time.sleep(4)           # longer than a backup waits for a master (3 adverts + skew)
    assert watch.failures() == 0 and len(watch.probe) > 10, watch.probe[-5:]
    assert holds_vip(lab, "lb-01") and not holds_vip(lab, "lb-02")
    assert not [e for e in watch.events("lb-01") if not e[1]], "lb-01 lost the VIP"
    TIMINGS["load balancers 2 -> 1 -> 2: probes of the VIP, failed"] = watch.failures()
