"""The Prometheus outputs: the alert rules pass `promtool check rules`, and
`promtool test rules` (Prometheus's own rule evaluator on synthetic series)
shows each alert firing on the failure it is for and none on a healthy
stack; the HAProxy exporter frontend passes `haproxy -c`. That every metric
the rules use exists in a real scrape is the lab's to show."""
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from components import monitoring
from components.loadbalancer import payloads as lbp
from config import load, raw_from_stack_file
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus; .ci/run)")

E = 'job="hakube-dev-etcd", hakube_stack="dev"'
H = 'job="hakube-dev-haproxy", hakube_stack="dev"'
N = 'job="hakube-dev-node", hakube_stack="dev"'


def healthy() -> dict[str, str]:
    """series -> values (one a minute for 30 minutes) of a healthy 3-member stack."""
    s = {}
    for n in ("etcd-01", "etcd-02", "etcd-03"):
        s[f'up{{{E}, node="{n}"}}'] = "1x30"
        s[f'etcd_server_has_leader{{{E}, node="{n}"}}'] = "1x30"
        s[f'etcd_server_leader_changes_seen_total{{{E}, node="{n}"}}'] = "1x30"
        for le, rate in (("0.008", 100), ("0.5", 100), ("1", 100), ("+Inf", 100)):
            s[f'etcd_disk_wal_fsync_duration_seconds_bucket{{{E}, node="{n}", le="{le}"}}'] = f"0+{rate}x30"
            s[f'etcd_disk_backend_commit_duration_seconds_bucket{{{E}, node="{n}", le="{le}"}}'] = f"0+{rate}x30"
        s[f'etcd_mvcc_db_total_size_in_bytes{{{E}, node="{n}"}}'] = "20000000x30"
        s[f'etcd_server_quota_backend_bytes{{{E}, node="{n}"}}'] = "2147483648x30"
        # hakube's exporter: a snapshot 10 min before each sample, every 6 h; a copy off-host by the leader
        s[f'up{{{N}, node="{n}"}}'] = "1x30"
        s[f'hakube_etcd_backup_last_success_timestamp_seconds{{{N}, node="{n}"}}'] = "-600+60x30"
        s[f'hakube_etcd_backup_interval_seconds{{{N}, node="{n}"}}'] = "21600x30"
        s[f'hakube_etcd_backup_offsite_last_success_timestamp_seconds{{{N}, node="{n}"}}'] = \
            "-600+60x30" if n == "etcd-01" else "-1000000000x30"          # never: the epoch, long ago
        s[f'hakube_certificate_expiry_timestamp_seconds{{{N}, node="{n}", path="/etc/etcd/pki/server.crt"}}'] = \
            f"{300 * 86400}x30"
    s[f'up{{{N}, node="master-01"}}'] = "1x30"
    s[f'hakube_certificate_expiry_timestamp_seconds{{{N}, node="master-01", '
      'path="/etc/kubernetes/pki/apiserver.crt"}'] = f"{200 * 86400}x30"
    s[f'up{{{H}, node="lb-01"}}'] = "1x30"
    for m in ("master-01", "master-02"):
        s[f'haproxy_server_status{{{H}, node="lb-01", proxy="kube-apiservers", server="{m}", state="UP"}}'] = "1x30"
        s[f'haproxy_server_status{{{H}, node="lb-01", proxy="kube-apiservers", server="{m}", state="DOWN"}}'] = "0x30"
    return s


def run_promtool(tmp_path, series: dict[str, str], expected: dict[str, int]) -> subprocess.CompletedProcess:
    (tmp_path / "rules.yml").write_text(monitoring.rules_yaml())
    samples = [{"labels": f'{{alertname="{name}"}}', "value": n} for name, n in sorted(expected.items())]
    test = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": k, "values": v} for k, v in series.items()],
        "promql_expr_test": [{"expr": 'count by (alertname) (ALERTS{alertstate="firing"})', "eval_time": "30m",
                              "exp_samples": samples}]}]}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    return subprocess.run(["promtool", "test", "rules", str(tmp_path / "test.yml")], capture_output=True, text=True)


def test_the_rules_pass_promtool_check(tmp_path):
    (tmp_path / "rules.yml").write_text(monitoring.rules_yaml())
    res = subprocess.run(["promtool", "check", "rules", str(tmp_path / "rules.yml")], capture_output=True, text=True)
    assert res.returncode == 0 and "SUCCESS: 13 rules found" in res.stdout, res.stdout + res.stderr


def test_a_healthy_stack_fires_nothing(tmp_path):
    res = run_promtool(tmp_path, healthy(), {})
    assert res.returncode == 0, res.stdout + res.stderr


def down(series, node, metric="up", job=E):
    series[f'{metric}{{{job}, node="{node}"}}'] = "1x10 0x20"


@pytest.mark.parametrize("failure, edit, expected", [
    ("one member down", lambda s: down(s, "etcd-03"), {"HakubeEtcdMemberDown": 1}),
    ("two of three down: quorum lost", lambda s: (down(s, "etcd-02"), down(s, "etcd-03")),
     {"HakubeEtcdMemberDown": 2, "HakubeEtcdInsufficientMembers": 1}),
    ("a member without a leader", lambda s: down(s, "etcd-01", "etcd_server_has_leader"), {"HakubeEtcdNoLeader": 1}),
    ("leader changes every few minutes", lambda s: s.__setitem__(
        f'etcd_server_leader_changes_seen_total{{{E}, node="etcd-02"}}', "1+1x30"),
     {"HakubeEtcdFrequentLeaderChanges": 1}),
    ("slow disk: fsyncs over half a second", lambda s: [s.__setitem__(
        f'etcd_disk_wal_fsync_duration_seconds_bucket{{{E}, node="etcd-01", le="{le}"}}', v)
        for le, v in (("0.008", "0x30"), ("0.5", "0x30"))], {"HakubeEtcdSlowFsync": 1}),
    ("slow backend commits", lambda s: [s.__setitem__(
        f'etcd_disk_backend_commit_duration_seconds_bucket{{{E}, node="etcd-02", le="{le}"}}', v)
        for le, v in (("0.008", "0x30"), ("0.5", "0+2x30"))], {"HakubeEtcdSlowCommit": 1}),
    ("database at 90 % of its quota", lambda s: s.__setitem__(
        f'etcd_mvcc_db_total_size_in_bytes{{{E}, node="etcd-01"}}', "1932735283x30"),
     {"HakubeEtcdDatabaseNearQuota": 1}),
    ("HAProxy down", lambda s: down(s, "lb-01", job=H), {"HakubeLoadBalancerDown": 1}),
    ("hakube's exporter down", lambda s: down(s, "master-01", job=N), {"HakubeExporterDown": 1}),
    ("a member's backups stopped 13 h ago", lambda s: s.__setitem__(
        f'hakube_etcd_backup_last_success_timestamp_seconds{{{N}, node="etcd-02"}}', "-46800x30"),
     {"HakubeEtcdBackupTooOld": 1}),
    ("no off-host copy for 13 h", lambda s: s.__setitem__(
        f'hakube_etcd_backup_offsite_last_success_timestamp_seconds{{{N}, node="etcd-01"}}', "-46800x30"),
     {"HakubeEtcdOffsiteBackupTooOld": 1}),
    ("a certificate expiring in 20 days", lambda s: s.__setitem__(
        f'hakube_certificate_expiry_timestamp_seconds{{{N}, node="master-01", '
        'path="/etc/kubernetes/pki/apiserver.crt"}', f"{20 * 86400}x30"), {"HakubeCertificateExpiresSoon": 1}),
    ("an apiserver down behind HAProxy", lambda s: (
        s.__setitem__(f'haproxy_server_status{{{H}, node="lb-01", proxy="kube-apiservers", server="master-02", '
                      'state="UP"}', "1x10 0x20"),
        s.__setitem__(f'haproxy_server_status{{{H}, node="lb-01", proxy="kube-apiservers", server="master-02", '
                      'state="DOWN"}', "0x10 1x20")), {"HakubeApiserverBackendDown": 1}),
])
def test_each_alert_fires_on_its_failure_and_no_other(tmp_path, failure, edit, expected):
    series = healthy()
    edit(series)
    res = run_promtool(tmp_path, series, expected)
    assert res.returncode == 0, f"{failure}:\n{res.stdout}{res.stderr}"


def test_scrape_configs_name_every_member_and_load_balancer_and_haproxy_exports_to_the_sources_only(tmp_path):
    raw = raw_from_stack_file(ROOT / "Pulumi.dev.yaml")
    raw["monitoring"] = {"sources": ["192.168.144.1"]}
    spec = load(raw, "dev")
    jobs = {j["job_name"]: j for j in yaml.safe_load(monitoring.scrape_configs_yaml(spec))}
    assert set(jobs) == {"hakube-dev-etcd", "hakube-dev-haproxy", "hakube-dev-node"}
    assert [c["labels"]["node"] for c in jobs["hakube-dev-node"]["static_configs"]] == \
        ["etcd-01", "etcd-02", "etcd-03", "master-01", "master-02", "master-03"]
    assert jobs["hakube-dev-node"]["static_configs"][0]["targets"] == ["192.168.144.201:9479"]
    assert [c["targets"] for c in jobs["hakube-dev-etcd"]["static_configs"]] == \
        [[f"192.168.144.20{i}:2381"] for i in (1, 2, 3)]
    assert jobs["hakube-dev-haproxy"]["static_configs"][0]["labels"] == {"hakube_stack": "dev", "node": "lb-01"}
    cfg = lbp.haproxy_cfg(spec)
    (tmp_path / "haproxy.cfg").write_text(cfg)
    res = subprocess.run(["haproxy", "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "tcp-request connection reject unless { src 192.168.144.1 }" in cfg
    assert "hakube-metrics" not in lbp.haproxy_cfg(load(raw_from_stack_file(ROOT / "Pulumi.dev.yaml"), "dev"))
    # a Prometheus accepts the scrape configs as they are
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({"scrape_configs": list(jobs.values())}))
    res = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def _probe(tmp_path, **paths):
    """components/steps/probe.py's functions with its paths pointed into tmp_path (it runs main() when loaded)."""
    source = (ROOT / "components" / "steps" / "probe.py").read_text()
    assert source.rstrip().endswith("main()")
    ns: dict = {"__name__": "probe"}
    exec(compile(source.rstrip()[:-len("main()")], "probe.py", "exec"), ns)
    ns.update(paths)
    return ns


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl")
def test_the_exporter_serves_backups_and_certificates_to_the_sources_only(tmp_path):
    """`probe.py --prometheus` as the socket unit runs it: one HTTP exchange on
    stdin/stdout. A source gets metrics that `promtool check metrics` accepts
    (a member's newest snapshot, the timer's period, its last off-host copy,
    each certificate's expiry); another address gets 403, another path 404."""
    pki, backups = tmp_path / "pki", tmp_path / "backups"
    pki.mkdir()
    backups.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(pki / "server.key"), "-out", str(pki / "server.crt"), "-days", "20",
                    "-subj", "/CN=etcd-01"], check=True, capture_output=True)
    (backups / "etcd-etcd-01-20261126T060000Z.db").write_bytes(b"x")
    (backups / "offsite.last").write_text("etcd-etcd-01-20261126T060000Z.db " + "ab" * 32 + " 1795680000\n")
    script = tmp_path / "hakube-etcd-backup"
    script.write_text(f"BACKUP_DIR={backups}\nOFFSITE_URL=sftp://x@y/etcd\n")
    probe = _probe(tmp_path, PKI=str(pki), BACKUP_SCRIPT=str(script))
    text = probe["metrics"]()
    assert "hakube_etcd_backup_offsite_last_success_timestamp_seconds 1795680000" in text
    assert f'hakube_certificate_expiry_timestamp_seconds{{path="{pki}/server.crt"}}' in text
    assert re.search(r"^hakube_etcd_backup_last_success_timestamp_seconds [1-9]\d+$", text, re.M)
    res = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr

    probe_py = ROOT / "components" / "steps" / "probe.py"
    request = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"

    def scrape(peer, req=request):
        return subprocess.run([sys.executable, str(probe_py), "--prometheus"], input=req.encode(),
                              capture_output=True, env={"PATH": "/usr/bin:/bin", "REMOTE_ADDR": peer,
                                                        "HAKUBE_METRICS_SOURCES": "10.0.0.0/24,192.0.2.7"}
                              ).stdout.decode()
    assert scrape("10.0.0.9").startswith("HTTP/1.0 200 OK\r\n")
    assert scrape("192.0.2.7").startswith("HTTP/1.0 200 OK\r\n")
    denied = scrape("10.0.1.9")
    assert denied.startswith("HTTP/1.0 403 Forbidden") and "hakube_" not in denied
    assert scrape("10.0.0.9", "GET / HTTP/1.1\r\n\r\n").startswith("HTTP/1.0 404")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze")
def test_the_exporter_units_pass_systemd_and_listen_on_the_nodes_own_address(tmp_path):
    raw = raw_from_stack_file(ROOT / "Pulumi.dev.yaml")
    raw["monitoring"] = {"sources": ["192.168.144.1", "10.9.0.0/16"]}
    spec = load(raw, "dev")
    node = spec.topology.node("master-02")
    values = monitoring.exporter_values(spec, node)
    (tmp_path / "hakube-metrics.socket").write_text(values["METRICS_SOCKET"] + "\n")
    (tmp_path / "hakube-metrics@.service").write_text(values["METRICS_SERVICE"] + "\n")
    res = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "hakube-metrics.socket"),
                          str(tmp_path / "hakube-metrics@.service")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"ListenStream={node.ip}:9479" in values["METRICS_SOCKET"] and "Accept=yes" in values["METRICS_SOCKET"]
    assert "Environment=HAKUBE_METRICS_SOURCES=192.168.144.1,10.9.0.0/16" in values["METRICS_SERVICE"]
    assert monitoring.exporter_values(load(raw_from_stack_file(ROOT / "Pulumi.dev.yaml"), "dev"), node) == \
        {"METRICS": 0}
