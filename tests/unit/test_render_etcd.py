"""etcd payloads against the real things: the rendered config file is read by
real etcd binaries serving mutual TLS on loopback: Debian's 3.4, upstream
3.5.1, and the releases hakube installs, built from etcd's Go modules by
`make tools` (3.5.33, the default 3.6, the newest 3.7); the units pass
`systemd-analyze verify`; the firewall ruleset passes `nft -c`; every step
script parses."""
import dataclasses
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from components.etcd import HERE as ETCD_DIR
from components import monitoring, steps
from components.etcd import payloads
from config import load, raw_from_stack_file
from config.spec import TuningSpec
from tests.conftest import ROOT
from tests.realtls import MiniCA
from tests.tools import etcd_release

BINARIES = Path(os.environ.get("HAKUBE_ETCD_BIN_DIR", ROOT / ".lab" / "etcd-bin"))


def _clients(version: str) -> Path:
    try:
        return etcd_release.clients_bin(version)
    except SystemExit:          # not built (make test-fast): the test is skipped, or fails saying so
        return etcd_release.built_bin(version)


def etcd_builds():
    """(version, etcd, etcdctl) for each real etcd to run: Debian's when it is
    installed, and (marked `tools`: `make test-fast` skips them) upstream 3.5.1
    (`make lab-releases`) and each release `make tools` builds."""
    out = []
    if shutil.which("etcd") and shutil.which("etcdctl"):
        out.append(pytest.param("3.4.23", shutil.which("etcd"), shutil.which("etcdctl"), id="3.4.23"))
    up = BINARIES / "v3.5.1"
    out.append(pytest.param("3.5.1", str(up / "etcd"), str(up / "etcdctl"), id="3.5.1", marks=pytest.mark.tools))
    for v in etcd_release.wrapped_versions():
        out.append(pytest.param(v, str(etcd_release.built_bin(v) / "etcd"), str(_clients(v) / "etcdctl"),
                                id=v, marks=pytest.mark.tools))
    return out


@pytest.mark.tools
def test_the_releases_hakube_installs_are_here_to_test():
    """`make tools` builds the default release and one of each line the
    upgrade path crosses; the tests below run each of them."""
    from config import versions
    built = etcd_release.built_versions()
    assert sorted({*built, *etcd_release.server_only_versions()}, key=lambda v: tuple(map(int, v.split(".")))) \
        == etcd_release.wrapped_versions(), "run `make tools`"
    assert versions.etcd_default() in built, built
    assert {v.rsplit(".", 1)[0] for v in built} >= {"3.5", "3.6", "3.7"}, built


def loopback_spec(version: str):
    """A one-member stack whose etcd lives on 127.0.0.201 (bindable on Linux)."""
    raw = raw_from_stack_file(ROOT / "Pulumi.minimal.yaml")
    raw["network"] = {"cidr": "127.0.0.0/24", "gateway": "127.0.0.254"}
    raw["etcd"] = {"version": version, **({"allowEndOfLife": True} if version.startswith("3.4.") else {})}
    return load(raw, "render")


def free(port: int, host: str) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) != 0


@pytest.mark.parametrize("version,etcd,etcdctl", etcd_builds())
def test_rendered_config_is_served_by_real_etcd(version, etcd, etcdctl, tmp_path):
    spec = loopback_spec(version)
    node = spec.topology.etcd[0]
    assert free(2379, "127.0.0.1") and free(2380, str(node.ip)), "etcd ports busy on loopback"
    ca, other_ca, peer_ca = MiniCA(), MiniCA("another-ca"), MiniCA("etcd-peer-ca")
    pki = tmp_path / "pki"
    pki.mkdir()
    dns, ips = spec.topology.etcd_server_sans(node)
    files = {
        "ca.crt": ca.cert_pem,
        "peer-ca.crt": peer_ca.cert_pem,
        **dict(zip(("server.crt", "server.key"), ca.issue(node.name, ["digital_signature", "server_auth", "client_auth"], dns, ips))),
        **dict(zip(("peer.crt", "peer.key"), peer_ca.issue(node.name, ["digital_signature", "server_auth", "client_auth"], *spec.topology.etcd_peer_sans(node)))),
        **dict(zip(("hc.crt", "hc.key"), ca.issue("kube-etcd-healthcheck-client", ["digital_signature", "client_auth"]))),
        **dict(zip(("rogue.crt", "rogue.key"), other_ca.issue("intruder", ["digital_signature", "client_auth"]))),
    }
    for name, text in files.items():
        (pki / name).write_text(text)
    cfg = tmp_path / "etcd.conf.yml"
    cfg.write_text(payloads.etcd_config_yaml(spec.etcd, spec.topology, node,
                                             pki_dir=str(pki), data_dir=str(tmp_path / "data")))
    log = open(tmp_path / "etcd.log", "w")
    proc = subprocess.Popen([etcd, "--config-file", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    ctl = [etcdctl, f"--endpoints=https://{node.ip}:2379", f"--cacert={pki}/ca.crt", "--dial-timeout=2s",
           "--command-timeout=3s"]
    env = {**os.environ, "ETCDCTL_API": "3"}
    try:
        good = ctl + [f"--cert={pki}/hc.crt", f"--key={pki}/hc.key"]
        for _ in range(60):
            if subprocess.run(good + ["endpoint", "health"], env=env, capture_output=True).returncode == 0:
                break
            assert proc.poll() is None, (tmp_path / "etcd.log").read_text()
            time.sleep(0.25)
        else:
            pytest.fail("etcd never became healthy:\n" + (tmp_path / "etcd.log").read_text())
        members = subprocess.run(good + ["member", "list"], env=env, capture_output=True, text=True, check=True).stdout
        assert f"started, {node.name}, {node.peer_url}, {node.client_url}" in members
        assert subprocess.run(good + ["put", "k", "v"], env=env, capture_output=True).returncode == 0
        # Mutual TLS: no client cert, or one from another CA, is refused.
        nocert = subprocess.run(ctl + ["get", "k"], env=env, capture_output=True, text=True)
        assert nocert.returncode != 0
        rogue = subprocess.run(ctl + [f"--cert={pki}/rogue.crt", f"--key={pki}/rogue.key", "get", "k"],
                               env=env, capture_output=True, text=True)
        assert rogue.returncode != 0
        # The peer port admits members' peer certs only: a client cert of the
        # etcd CA is refused there. (etcd also checks a peer's SANs against
        # its source address: connect from the member's own IP.)
        def peer_get(cert):
            return subprocess.run(["curl", "-s", "--http1.1", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                                   "--interface", str(node.ip),
                                   "--cacert", f"{pki}/peer-ca.crt", "--cert", f"{pki}/{cert}.crt",
                                   "--key", f"{pki}/{cert}.key", f"{node.peer_url}/members"],
                                  capture_output=True, text=True)
        assert peer_get("peer").stdout == "200"
        refused = peer_get("hc")
        assert refused.returncode != 0 and refused.stdout == "000", refused
        # The metrics the alert rules read are the ones this release serves.
        served = urllib.request.urlopen("http://127.0.0.1:2381/metrics", timeout=5).read().decode()
        names = set(re.findall(r"^([a-z_]+)[{ ]", served, re.M))
        wanted = set(re.findall(r"\b(etcd_[a-z_]+)\{" + re.escape(monitoring.ETCD_JOB), monitoring.rules_yaml()))
        assert wanted and wanted <= names, sorted(wanted - names)
        # Only AEAD suites are offered: a TLS 1.1 handshake must fail.
        tls11 = subprocess.run(["openssl", "s_client", "-connect", f"{node.ip}:2379", "-tls1_1"],
                               input="", capture_output=True, text=True, timeout=10)
        assert "Cipher is (NONE)" in tls11.stdout or tls11.returncode != 0
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.mark.parametrize("version,etcd,etcdctl", etcd_builds())
def test_every_key_hakube_writes_is_a_flag_of_the_release_it_runs(version, etcd, etcdctl):
    """etcd reads its config file leniently (yaml.Unmarshal: a key it does
    not know is dropped without a word), so a release serving the file
    proves nothing about a removed key. Each key of the file is named after
    one of the release's flags (the transport blocks' keys after the client
    flags and, with peer-, the peer flags); the release's own --help lists
    them. 3.7 removed every --experimental-* flag: a key of those fails here."""
    res = subprocess.run([etcd, "--help"], capture_output=True, text=True)
    flags = set(re.findall(r"^\s+--([a-z0-9-]+)", res.stdout + res.stderr, re.M))
    assert len(flags) > 50, res.stdout + res.stderr
    spec = loopback_spec(version)
    cfg = payloads.etcd_config(spec.etcd, spec.topology, spec.topology.etcd[0], metrics_port=9979)
    keys = []
    for key, value in cfg.items():
        if key == "client-transport-security":
            keys += list(value)
        elif key == "peer-transport-security":
            keys += [f"peer-{k}" for k in value]
        else:
            keys.append(key)
    assert [k for k in keys if k not in flags] == []


def test_config_keys_follow_the_version():
    v36 = loopback_spec("3.6.14")
    assert "tls-min-version" in payloads.etcd_config(v36.etcd, v36.topology, v36.topology.etcd[0])
    spec = loopback_spec("3.5.1")
    cfg = payloads.etcd_config(spec.etcd, spec.topology, spec.topology.etcd[0])
    assert "tls-min-version" not in cfg
    assert cfg["client-transport-security"]["client-cert-auth"] is True
    assert cfg["peer-transport-security"]["client-cert-auth"] is True
    assert cfg["client-transport-security"]["cert-file"] != cfg["peer-transport-security"]["cert-file"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize("unit,source", [("etcd.service", "etcd.service"),
                                         ("hakube-etcd-firewall.service", "firewall.service"),
                                         ("hakube-etcd-backup.service", "backup/hakube-etcd-backup.service"),
                                         ("hakube-etcd-maintenance.service",
                                          "maintenance/hakube-etcd-maintenance.service")])
def test_units_pass_systemd_analyze_verify(unit, source, tmp_path):
    text = (ETCD_DIR / source).read_text()
    if unit == "etcd.service":     # a template: the tuning's strongest settings
        spec = load(raw_from_stack_file(ROOT / "Pulumi.dev.yaml"), "dev")
        tuned = dataclasses.replace(spec.etcd, tuning=TuningSpec(io_class="realtime", io_priority=0, nice=-10))
        text = payloads.etcd_unit(tuned, text)
        assert "IOSchedulingClass=realtime\nIOSchedulingPriority=0\nNice=-10\n" in text
    # verify checks ExecStart binaries exist: point them at a stand-in.
    fake = tmp_path / "bin"
    fake.mkdir()
    for binary in ("etcd", "nft", "hakube-etcd-backup", "hakube-etcd-maintenance"):
        (fake / binary).write_text("#!/bin/sh\n")
        (fake / binary).chmod(0o755)
    text = text.replace("/usr/local/bin/etcd", str(fake / "etcd")).replace("/usr/sbin/nft", str(fake / "nft")) \
        .replace("/usr/local/sbin/hakube-etcd-", str(fake / "hakube-etcd-"))
    (tmp_path / unit).write_text(text)
    res = subprocess.run(["systemd-analyze", "verify", str(tmp_path / unit)], capture_output=True, text=True)
    problems = [line for line in (res.stdout + res.stderr).splitlines() if unit in line]
    assert res.returncode == 0 and not problems, res.stdout + res.stderr


@pytest.mark.skipif(shutil.which("nft") is None, reason="needs nftables")
def test_firewall_ruleset_passes_nft_check(tmp_path):
    spec = load(raw_from_stack_file(ROOT / "Pulumi.dev.yaml"), "dev")
    node = spec.topology.etcd[1]
    rules = payloads.firewall_ruleset(spec.topology, node)
    (tmp_path / "fw.nft").write_text(rules)
    res = subprocess.run(["nft", "-c", "-f", str(tmp_path / "fw.nft")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    clients = rules.split("etcd_clients")[1].split("}")[0]
    peers = rules.split("etcd_peers")[1].split("}")[0]
    assert "192.168.144.101" in clients and "192.168.144.202" in clients
    assert "192.168.144.91" not in clients          # the load balancer is no etcd client
    assert "192.168.144.101" not in peers           # control planes are no peers
    assert "2381" not in rules                       # no monitoring: no metrics port open


@pytest.mark.skipif(shutil.which("nft") is None, reason="needs nftables")
def test_with_monitoring_the_metrics_port_opens_to_its_sources_only(tmp_path):
    raw = raw_from_stack_file(ROOT / "Pulumi.dev.yaml")
    raw["monitoring"] = {"sources": ["192.168.144.1", "10.9.0.0/24"]}
    spec = load(raw, "dev")
    node = spec.topology.etcd[0]
    rules = payloads.firewall_ruleset(spec.topology, node, spec.monitoring)
    (tmp_path / "fw.nft").write_text(rules)
    res = subprocess.run(["nft", "-c", "-f", str(tmp_path / "fw.nft")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "elements = { 192.168.144.1, 10.9.0.0/24 }" in rules
    assert rules.index("tcp dport 2381 ip saddr @monitoring accept") < rules.index("tcp dport 2381 counter drop")
    cfg = payloads.etcd_config(spec.etcd, spec.topology, node, metrics_port=spec.monitoring.etcd_port)
    assert cfg["listen-metrics-urls"] == "http://127.0.0.1:2381,http://192.168.144.201:2381"



def test_pem_files_step_writes_only_what_differs(tmp_path):
    """The shared PEM step, run for real: modes, owners, content; a second run
    with the same bundle writes nothing; a short bundle is refused."""
    files = [(str(tmp_path / "pki/ca.crt"), "0644", "root", "root"),
             (str(tmp_path / "pki/client.key"), "0600", "root", "root")]
    libs = tmp_path / "lib"
    installed = subprocess.run(["bash", "-c", steps.install_helpers(str(libs)).removeprefix("sudo -n ")],
                               input=steps.helpers_bundle(), capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    script = steps.step_script(steps.PEM_FILES, {"PEM_FILES": steps.pem_files_spec(files)}, lib_dir=str(libs))
    bundle = "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n" \
             "-----BEGIN PRIVATE KEY-----\nB\n-----END PRIVATE KEY-----\n"
    run = lambda stdin: subprocess.run(["bash", "-c", script.removeprefix("sudo -n ")], input=stdin,
                                       capture_output=True, text=True)
    first = run(bundle)
    assert first.returncode == 0, first.stderr
    assert "certificates updated" in first.stdout
    assert oct((tmp_path / "pki/client.key").stat().st_mode & 0o777) == "0o600"
    assert (tmp_path / "pki/client.key").read_text() == "-----BEGIN PRIVATE KEY-----\nB\n-----END PRIVATE KEY-----\n"
    again = run(bundle)
    assert again.returncode == 0 and "certificates unchanged" in again.stdout
    short = run(bundle.split("-----BEGIN PRIVATE")[0])
    assert short.returncode == 1 and "no block for" in short.stderr


def test_cert_bundle_keeps_the_file_order_and_refuses_garbage():
    pems = [f"-----BEGIN X-----\n{i}\n-----END X-----" for i in range(len(payloads.CERT_FILES))]
    bundle = payloads.cert_bundle(pems)
    assert bundle.index("\n0\n") < bundle.index("\n7\n")
    with pytest.raises(ValueError):
        payloads.cert_bundle(pems[:-1])
    with pytest.raises(ValueError, match="server.key"):
        payloads.cert_bundle(pems[:3] + ["not a pem"] + pems[4:])


def test_etcdctl_env_points_at_kubeadm_paths():
    spec = load(raw_from_stack_file(ROOT / "Pulumi.dev.yaml"), "dev")
    env = payloads.etcdctl_env(spec.topology)
    assert "ETCDCTL_CERT=/etc/kubernetes/pki/apiserver-etcd-client.crt" in env
    assert "https://192.168.144.203:2379" in env


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize("job", ["backup", "maintenance"])
def test_scheduled_jobs_timer_calendar_and_script_pass_their_checks(job, tmp_path):
    """What job.sh checks on a member, here: the timer verifies, the default
    calendar parses, the job's script (values + helpers + its file) parses."""
    from components.etcd.plan import timer_job
    from config.spec import DEFAULT_BACKUP, DEFAULT_MAINTENANCE
    calendar = {"backup": DEFAULT_BACKUP, "maintenance": DEFAULT_MAINTENANCE}[job].calendar
    script_file = {"backup": "backup/snapshot.sh", "maintenance": "maintenance/maintain.sh"}[job]
    values, script = timer_job(job, f"the {job}", True, calendar, "-", ETCD_DIR / script_file,
                               {"PKI_DIR": "/etc/etcd/pki", "X": 1})
    unit = values["JOB"]
    (tmp_path / f"{unit}.timer").write_text(values["JOB_TIMER"])
    (tmp_path / f"{unit}.service").write_text("[Service]\nType=oneshot\nExecStart=/bin/true\n")
    res = subprocess.run(["systemd-analyze", "verify", str(tmp_path / f"{unit}.timer")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"OnCalendar={calendar}" in values["JOB_TIMER"]
    cal = subprocess.run(["systemd-analyze", "calendar", calendar], capture_output=True, text=True)
    assert cal.returncode == 0 and "Next elapse" in cal.stdout, cal.stdout + cal.stderr
    assert script.startswith("#!/bin/bash\nset -euo pipefail\n")
    res = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def _disk_check(tmp_path, mode: str, limit_ms: int, wal: bool = False):
    data = tmp_path / "data"
    if wal:
        (data / "member" / "wal").mkdir(parents=True)
        (data / "member" / "wal" / "0000000000000000-0000000000000000.wal").write_text("x")
    body = steps.step_body(ETCD_DIR / "disk-check.sh", {"ETCD_DATA_DIR": str(data), "MODE": mode,
                                                         "FSYNC_LIMIT_MS": limit_ms, "FSYNC_COUNT": 20})
    body = body.replace(f". {steps.LIB_DIR}/common.sh\n", (steps.HERE / "common.sh").read_text())
    return subprocess.run(["bash", "-c", body], capture_output=True, text=True), data


@pytest.mark.skipif(subprocess.run(["id", "etcd"], capture_output=True).returncode != 0,
                    reason="needs the etcd user (Debian's etcd-server; .ci/run installs it)")
def test_the_disk_check_measures_synced_writes_and_warns_refuses_or_passes(tmp_path):
    """disk-check.sh for real on this machine's disk: under a generous limit it
    passes naming the average; under an impossible one (0 ms) warn goes on
    with a warning and refuse fails naming the remedy; a member with data is
    not measured; the probe file never stays."""
    ok, data = _disk_check(tmp_path / "a", "refuse", 1000)
    assert ok.returncode == 0 and re.search(r"takes \d+\.\d{3} ms on average \(etcd wants under 1000 ms\)",
                                            ok.stdout), ok.stderr
    assert list(data.iterdir()) == []
    warned, _ = _disk_check(tmp_path / "b", "warn", 0)
    assert warned.returncode == 0 and warned.stderr.startswith("warning:") and "over etcd's 0 ms" in warned.stderr
    refused, _ = _disk_check(tmp_path / "c", "refuse", 0)
    assert refused.returncode == 1 and "Not starting etcd" in refused.stderr and "fsyncCheck" in refused.stderr
    skipped, _ = _disk_check(tmp_path / "d", "refuse", 0, wal=True)
    assert skipped.returncode == 0 and "not measured again" in skipped.stdout
