"""Watching the VIP of a keepalived pair: which load balancer holds it, and
a probe of it from a control plane (the pair's tests are at the end of
test_lab.py)."""
from __future__ import annotations

import datetime as dt
import re
import shlex
import subprocess
import time

import pytest


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


# --- HAProxy's view of the apiservers, and requests through the VIP ----------

def haproxy_stats(lab) -> dict[str, list[str]]:
    """lb-01's HAProxy `show stat` rows of the apiservers' backend, by server
    (CSV: svname 1, stot 7, status 17)."""
    res = lab.sh("lb-01", "echo 'show stat' | sudo -n nc -U /run/haproxy/admin.sock")
    assert res.rc == 0, f"lb-01: HAProxy's stats: {res.stdout}{res.stderr}"
    rows = [line.split(",") for line in res.stdout.splitlines() if line.startswith("kube-apiservers,")]
    return {r[1]: r for r in rows if r[1] not in ("BACKEND", "FRONTEND")}


def server_states(lab) -> dict[str, str]:
    return {server: row[17] for server, row in haproxy_stats(lab).items()}


def wait_state(lab, server, want, timeout=30.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if server_states(lab).get(server, "").startswith(want):
            return time.monotonic() - t0
        time.sleep(0.25)
    pytest.fail(f"{server} not {want} after {timeout} s: {server_states(lab)}")


# Requests through the VIP from master-01 (as root): `kubectl get --raw
# /readyz` with admin.conf (its server is the VIP), a new process and
# connection every 0.2 s, each in the background (so requests overlap, as a
# cluster's clients do): one line "start_ms duration_ms rc body" per request.
REQUEST_LOOP = r"""
end=$((SECONDS + DUR))
while [ $SECONDS -lt $end ]; do
  ( s=$(date +%s%3N)
    out=$(kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /readyz --request-timeout=15s 2>/dev/null); rc=$?
    echo "$s $(( $(date +%s%3N) - s )) $rc $out" ) &
  sleep 0.2
done
wait
"""


def under_load(lab, break_it, restore, duration=16, at=3, server="master-02"):
    """Run the request loop on master-01, break `server` `at` s in, and
    return (seconds until HAProxy marked it DOWN, the requests as (start, ms,
    ok) from the moment it was broken, and how long breaking it took)."""
    loop = lab.ssh.start(lab.connection("master-01"),
                         f"sudo -n env DUR={duration} bash -c {shlex.quote(REQUEST_LOOP)}")
    try:
        time.sleep(at)
        broken = time.time()
        break_it()
        # a kill over SSH takes effect somewhere inside that call: requests
        # started before it returned may have been in flight when it did
        settled = time.time() - broken
        down = wait_state(lab, server, "DOWN", timeout=20)
        out, _ = loop.communicate(timeout=duration + 30)
    finally:
        restore()
    rows = [line.split(" ", 3) for line in out.splitlines() if line.strip()]
    requests = [(int(r[0]) / 1000 - broken, int(r[1]), r[2] == "0" and r[3:] == ["ok"]) for r in rows]
    return down, requests, settled
