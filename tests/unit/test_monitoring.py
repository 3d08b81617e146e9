"""The Prometheus outputs: the alert rules pass `promtool check rules`, and
`promtool test rules` (Prometheus's own rule evaluator on synthetic series)
shows each alert firing on the failure it is for and none on a healthy
stack; the HAProxy exporter frontend passes `haproxy -c`. That every metric
the rules use exists in a real scrape is the lab's to show."""
import shutil
import subprocess

import pytest
import yaml

from components import monitoring
from components.loadbalancer import payloads as lbp
from config import load, raw_from_stack_file
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus; .ci/run)")

E = 'job="hakube-dev-etcd", hakube_stack="dev"'
H = 'job="hakube-dev-haproxy", hakube_stack="dev"'


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
    assert res.returncode == 0 and "SUCCESS: 9 rules found" in res.stdout, res.stdout + res.stderr


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
    assert set(jobs) == {"hakube-dev-etcd", "hakube-dev-haproxy"}
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
