"""The keepalived pair, in the lab stack with two load balancers: the VIP
sits on the preferred LB, moves when its HAProxy stops, and comes back."""
from __future__ import annotations

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
