"""Pure renderers of the load balancer's files: haproxy.cfg (the API front
door) and, for a pair, keepalived.conf (the floating VIP).

Checks as kubeadm's HA guide (docs/ha-considerations.md in
kubernetes/kubeadm): HTTPS `GET /readyz` with TLS verification off,
client/server timeouts of 20 s, a check timeout of 10 s. Tuned, and measured
in the lab under a request loop, for an apiserver host that goes silent
(power loss: no RST, no FIN), not only one whose process dies:
- `observe layer4 error-limit 1 on-error mark-down`: the first connection
  that cannot reach a server marks it down (1.2 s after the silence in the
  lab, against 12 s with checks `inter 2s fall 3` alone);
- checks `inter 1s fastinter 500ms fall 3` (about 5 s with no traffic);
- `timeout connect 1s`, `retries 3`, `option redispatch 1`: a request sent to
  the dead server is re-sent to another within a second;
- no `on-marked-down shutdown-sessions`: it cut off requests that were being
  re-sent at the moment the server was marked down (5 of 250 in the lab);
  sessions established with a dead host end at `timeout server` instead.
"""
from __future__ import annotations

import hashlib

from config.spec import Spec
from config.topology import NodeSpec

STATS_SOCKET = "/run/haproxy/admin.sock"
CHECK_INTER_S = 1
CHECK_FASTINTER_MS = 500
CHECK_FALL = 3
CHECK_RISE = 2
VRRP_INTERFACE = "eth0"       # every node's one link, named by its network-config


def _metrics_frontend(spec: Spec) -> str:
    mon = spec.monitoring
    return "" if not mon.enabled else f"""
# HAProxy's own Prometheus exporter (built in: USE_PROMEX), for
# hakube:monitoring.sources only.
frontend hakube-metrics
    bind :{mon.haproxy_port}
    mode http
    tcp-request connection reject unless {{ src {' '.join(mon.sources)} }}
    http-request set-log-level silent
    http-request use-service prometheus-exporter if {{ path /metrics }}
    http-request return status 404
"""


def haproxy_cfg(spec: Spec) -> str:
    k8s, topo = spec.kubernetes, spec.topology
    servers = "\n".join(
        f"    server {n.name} {n.ip}:{k8s.api_port} check check-ssl verify none "
        f"inter {CHECK_INTER_S}s fastinter {CHECK_FASTINTER_MS}ms fall {CHECK_FALL} rise {CHECK_RISE}"
        for n in topo.control_planes)
    metrics = _metrics_frontend(spec)
    return f"""\
# Managed by hakube: changes are overwritten by `pulumi up`.
global
    log /dev/log local0
    log /dev/log local1 notice
    stats socket {STATS_SOCKET} mode 660 level admin
    stats timeout 30s
    user haproxy
    group haproxy
    daemon

defaults
    mode http
    log global
    option httplog
    option dontlognull
    option http-server-close
    option forwardfor except 127.0.0.0/8
    option redispatch 1
    retries 3
    timeout http-request 10s
    timeout queue 20s
    timeout connect 1s
    timeout client 35s
    timeout server 35s
    timeout http-keep-alive 10s
    timeout check 10s

# The Kubernetes API on the VIP: plain TCP, TLS ends at the apiservers.
frontend kube-apiserver
    bind {k8s.vip}:{k8s.api_port}
    mode tcp
    option tcplog
    timeout client 20s
    default_backend kube-apiservers

backend kube-apiservers
    mode tcp
    option httpchk
    http-check send meth GET uri /readyz
    http-check expect status 200
    balance roundrobin
    timeout server 20s
    default-server observe layer4 error-limit 1 on-error mark-down
{servers}
{metrics}"""


def vrrp_router_id(spec: Spec) -> int:
    """1-255, stable per stack, so two stacks on one L2 segment differ."""
    return int(hashlib.sha256(f"{spec.project}/{spec.stack}".encode()).hexdigest(), 16) % 255 + 1


def vrrp_peers(spec: Spec, node: NodeSpec) -> list[str]:
    """Where a load balancer sends its VRRP adverts: the other one of a pair;
    for a single one, the address after its own, where a second one is
    placed (`nodes.loadBalancer` addresses are consecutive unless `ips`
    says otherwise). So a second load balancer that joins starts as backup
    under a master it hears, and one that leaves (its VM goes only after
    the survivor's config changed) never stops hearing it: the VIP is on
    one host at every moment of a 1 <-> 2 change."""
    lbs = spec.topology.load_balancers
    if len(lbs) > 1:
        return [str(n.ip) for n in lbs if n.name != node.name]
    return [str(node.ip + 1)]


def keepalived_conf(spec: Spec, node: NodeSpec, auth_pass: str) -> str:
    """VRRP over unicast (one load balancer or two: keepalived holds the VIP
    either way); the track script checks the local HAProxy, not the
    apiservers (HAProxy already routes around a dead apiserver; moving the
    VIP would not help)."""
    lbs = spec.topology.load_balancers
    priority = 150 - lbs.index(node)          # the first LB is preferred
    prefix = spec.network.cidr.prefixlen
    peer_lines = "\n".join(f"        {ip}" for ip in vrrp_peers(spec, node))
    return f"""\
# Managed by hakube: changes are overwritten by `pulumi up`.
global_defs {{
    router_id {node.name}
    enable_script_security
    script_user root
}}

vrrp_script chk_haproxy {{
    script "/usr/bin/systemctl is-active --quiet haproxy"
    interval 2
    fall 2
    rise 2
}}

vrrp_instance hakube_api {{
    state BACKUP
    interface {VRRP_INTERFACE}
    virtual_router_id {vrrp_router_id(spec)}
    priority {priority}
    advert_int 1
    unicast_src_ip {node.ip}
    unicast_peer {{
{peer_lines}
    }}
    authentication {{
        auth_type PASS
        auth_pass {auth_pass}
    }}
    virtual_ipaddress {{
        {spec.kubernetes.vip}/{prefix} dev {VRRP_INTERFACE}
    }}
    track_script {{
        chk_haproxy
    }}
}}
"""


def auth_pass(secret_material: str) -> str:
    """VRRP PASS authentication takes 8 characters: derived from a generated
    key held in Pulumi's state, so it is random and stable."""
    return hashlib.sha256(secret_material.encode()).hexdigest()[:8]
