"""Monitoring: the metrics ports and who may scrape them."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..reader import Section


@dataclass(frozen=True)
class MonitoringSpec:
    """Metrics for a Prometheus outside the cluster: etcd's own metrics
    listener and HAProxy's exporter, reachable only from `sources` (none:
    no listener at all)."""
    sources: tuple[str, ...] = ()
    etcd_port: int = 2381
    haproxy_port: int = 8405
    node_port: int = 9479          # hakube's own exporter: backup age, certificate expiry

    @property
    def enabled(self) -> bool:
        return bool(self.sources)


def _monitoring(s: Section) -> MonitoringSpec:
    sources = s.string_list("sources", []) or []
    for src in sources:
        try:
            ipaddress.IPv4Network(src, strict=False)
        except ValueError:
            s.problems.add(s.key("sources"), f"{src!r} is not an IPv4 address or network (e.g. 192.168.144.1 "
                           "or 10.0.0.0/24: where Prometheus scrapes from)")
    etcd_port = s.integer("etcdMetricsPort", 2381, 1024, 65535)
    haproxy_port = s.integer("haproxyMetricsPort", 8405, 1024, 65535)
    node_port = s.integer("nodeMetricsPort", 9479, 1024, 65535)
    ports = (("etcdMetricsPort", etcd_port), ("haproxyMetricsPort", haproxy_port), ("nodeMetricsPort", node_port))
    for key, port in ports:
        if port in (2379, 2380, 6443, 10250, 10257, 10259):
            s.problems.add(s.key(key), f"{port} is already taken by etcd or Kubernetes")
    if isinstance(node_port, int) and node_port in (etcd_port, haproxy_port):
        s.problems.add(s.key("nodeMetricsPort"), f"{node_port} is already the etcd or HAProxy metrics port")
    s.finish()
    return MonitoringSpec(sources=tuple(sources), etcd_port=etcd_port, haproxy_port=haproxy_port,
                          node_port=node_port)
