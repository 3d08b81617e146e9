"""The lab's checks: the lab stack brought up by the program's own graph on
real hosts, asserted through real clients (etcdctl, curl, HAProxy's stats
socket, systemd) over real SSH. Tests run in file order against one lab."""
from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from config import versions

from tests.harness import ROOT
from tests.realtls import MiniCA

from .conftest import TIMINGS
from .providers import StepFailed

pytestmark = pytest.mark.lab

ETCD = ("etcd-01", "etcd-02", "etcd-03")
HC = ("ETCDCTL_API=3 etcdctl --cacert=/etc/etcd/pki/ca.crt --cert=/etc/etcd/pki/healthcheck-client.crt "
      "--key=/etc/etcd/pki/healthcheck-client.key --dial-timeout=2s --command-timeout=4s")


def ok(lab, node, command, **kw):
    res = lab.sh(node, command, **kw)
    assert res.rc == 0, f"{node}: {command}\n{res.stdout}\n{res.stderr}"
    return res.stdout


def sudo(command: str) -> str:
    return "sudo -n bash -c " + shlex.quote(command)


def ips(lab):
    return lab.outputs["nodeIps"]


# --- etcd: membership, health, mutual TLS, firewall, files -------------------

def test_member_list_shows_the_three_configured_members(lab):
    out = ok(lab, "etcd-01", sudo(f"{HC} --endpoints=https://127.0.0.1:2379 member list -w json"))
    members = {m["name"]: m for m in json.loads(out)["members"]}
    assert sorted(members) == list(ETCD)
    for name in ETCD:
        assert members[name]["peerURLs"] == [f"https://{ips(lab)[name]}:2380"]
        assert members[name]["clientURLs"] == [f"https://{ips(lab)[name]}:2379"]   # started
        assert not members[name].get("isLearner")


def test_endpoint_health_from_a_control_plane_with_kubeadm_paths(lab):
    """The seed's check 5.3, with the environment the stack exports."""
    env = lab.outputs["etcdctlEnv"]
    out = ok(lab, "master-01", sudo(env + "etcdctl endpoint health"))
    healthy = re.findall(r"^(https://\S+) is healthy", out, re.M)
    assert sorted(healthy) == sorted(f"https://{ips(lab)[n]}:2379" for n in ETCD)
    assert "/etc/kubernetes/pki/apiserver-etcd-client.crt" in env


def test_the_package_step_installs_the_release_from_the_package_repository(lab):
    """hakube's package step, as on a user's node, on each control plane:
    kubernetes.packageRepository is a signed repository in pkgs.k8s.io's
    layout (the lab's: packages of binaries built from Go modules,
    tools/kubernetes_repo.py). kubeadm, kubelet and kubectl at the stack's
    version, held; cri-tools and kubernetes-cni come as their dependencies;
    kubelet's unit runs kubelet with kubeadm's drop-in, enabled."""
    version = lab.spec.kubernetes.version
    step = next(s for s in lab.mocks.steps if s.name == "hakube-cp-master-01-kube-packages")
    assert f"installed kubeadm/kubelet/kubectl {version}-0hakube1 (was: none)" in step.stdout, step.stdout
    for node in ("master-01", "master-02"):
        out = ok(lab, node, sudo(
            "kubeadm version -o short; kubelet --version; kubectl version --client | head -1; crictl --version; "
            "apt-mark showhold | sort | paste -sd' '; "
            "dpkg-query -W -f '${Package} ${Version}\\n' cri-tools kubernetes-cni; "
            "systemctl is-enabled kubelet; systemctl show -p ExecStart --value kubelet; "
            "ls /opt/cni/bin | paste -sd' '"))
        lines = out.splitlines()
        assert lines[:4] == [f"v{version}", f"Kubernetes v{version}", f"Client Version: v{version}",
                             "crictl version v1.36.0"], out
        assert lines[4] == "kubeadm kubectl kubelet", out
        assert lines[5:7] == ["cri-tools 1.36.0-0hakube1", "kubernetes-cni 1.10.0-0hakube1"], out
        assert lines[7] == "enabled", out
        # the drop-in's ExecStart, the unit's reset: kubelet reads what kubeadm writes
        assert "argv[]=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS " \
               "$KUBELET_EXTRA_ARGS ;" in lines[8], out
        assert lines[9] == "bridge host-local loopback portmap", out


POD = {"metadata": {"name": "hakube-probe", "namespace": "default", "uid": "hakube-probe-1"},
       # the node's network (no CNI yet); a systemd slice as parent, as kubelet gives one with the systemd driver
       "linux": {"cgroup_parent": "hakube.slice", "security_context": {"namespace_options": {"network": 2}}},
       "log_directory": "/var/tmp/probe"}
PROBE = {"metadata": {"name": "iptables"}, "command": ["/usr/sbin/iptables", "--version"], "log_path": "iptables.log"}


def test_each_control_plane_runs_a_pod_from_the_images_made_here(lab):
    """The images kubeadm asks for, made from the binaries `make tools` built
    (tools/kubernetes_images.py: one layer each), given to each control
    plane's containerd after its containerd step (the lab has no registry:
    Lab.give_images): `crictl images` lists every
    image `kubeadm config images list` names for the node's own config. A pod
    sandbox runs on the pause image the containerd step configured, and a
    container of the kube-proxy image runs its iptables (nf_tables) there."""
    version = lab.spec.kubernetes.version
    # the init file hakube hands the learner: external etcd, so no etcd image
    wanted = ok(lab, "master-01", sudo("kubeadm config images list --config /root/kubeadm.yaml")).split()
    assert not [w for w in wanted if "/etcd:" in w], wanted
    for node in ("master-01", "master-02"):
        listed = json.loads(ok(lab, node, sudo("crictl images -o json")))
        tags = {t for image in listed["images"] for t in image.get("repoTags") or []}
        assert wanted and set(wanted) <= tags, (sorted(set(wanted) - tags), sorted(tags))
        assert {name for name, _ in lab.images} <= tags
    pod, probe = json.dumps(POD), json.dumps({**PROBE, "image": {"image": f"registry.k8s.io/kube-proxy:v{version}"}})
    out = ok(lab, "master-01", sudo(
        f"mkdir -p /var/tmp/probe && cd /var/tmp/probe && echo '{pod}' >pod.json && echo '{probe}' >c.json && "
        "p=$(crictl runp pod.json) && c=$(crictl create $p c.json pod.json) && crictl start $c >/dev/null && "
        "for i in $(seq 1 30); do [ \"$(crictl inspect -o go-template --template '{{.status.state}}' $c)\" = "
        "CONTAINER_EXITED ] && break; sleep 1; done; crictl logs $c; "
        "crictl stopp $p >/dev/null; crictl rmp $p >/dev/null"))
    assert re.search(r"^iptables v1\.8\.\d+ \(nf_tables\)$", out, re.M), out


def test_a_pod_host_sets_this_machines_kernel_tunables_and_the_lab_puts_them_back(lab, tmp_path):
    """A control plane's /proc/sys is writable (kubelet sets vm.overcommit_memory
    and kernel.panic*), and those keys are this machine's own, not the
    container's: the lab keeps their values before its first host boots, and
    the last lab down puts them back (down_all), with the inotify limit the
    lab raised. Checked here on one key, from a copy of what was kept: the
    labs beside this one still run."""
    from .hosts import LAB_LIMITS, MACHINE_SYSCTLS, SYSCTLS_SAVED, _sysctl_path, restore_sysctls
    knob = Path("/proc/sys/vm/overcommit_memory")
    saved = json.loads(SYSCTLS_SAVED.read_text())
    assert sorted(saved) == sorted(k for k in MACHINE_SYSCTLS if _sysctl_path(k).exists())
    for key, floor in LAB_LIMITS.items():
        assert int(_sysctl_path(key).read_text()) >= floor, key
    was = knob.read_text().strip()      # another lab's kubelet may have set it since
    other = "1" if saved["vm.overcommit_memory"] != "1" else "0"
    copy = tmp_path / "saved.json"
    copy.write_text(json.dumps({"vm.overcommit_memory": saved["vm.overcommit_memory"]}))
    try:
        ok(lab, "master-01", sudo(f"sysctl -qw vm.overcommit_memory={other}"))
        assert knob.read_text().strip() == other                 # the machine's, as kubelet's would be
        assert restore_sysctls(saved=copy) == {"vm.overcommit_memory": (other, saved["vm.overcommit_memory"])}
        assert knob.read_text().strip() == saved["vm.overcommit_memory"]
        assert not copy.exists() and SYSCTLS_SAVED.exists()
    finally:
        knob.write_text(was + "\n")


def test_clients_without_a_cert_or_with_another_cas_cert_are_refused(lab):
    ep = f"https://{ips(lab)['etcd-01']}:2379"
    # no client certificate: TLS handshake refused
    res = lab.sh("master-01", sudo(f"curl -sS --max-time 5 --cacert /etc/kubernetes/pki/etcd/ca.crt {ep}/version"))
    assert res.rc != 0, res.stdout
    # a client certificate from another CA
    cert, key = MiniCA("not-the-etcd-ca").issue("intruder", ["digital_signature", "client_auth"])
    script = ("d=$(mktemp -d); umask 077; awk -v d=$d '/BEGIN/{n++} {print > (d \"/\" n \".pem\")}'; "
              f"ETCDCTL_API=3 etcdctl --endpoints={ep} --cacert=/etc/kubernetes/pki/etcd/ca.crt "
              "--cert=$d/1.pem --key=$d/2.pem --dial-timeout=3s --command-timeout=4s get x; rc=$?; rm -rf $d; exit $rc")
    res = lab.sh("master-01", script, stdin=cert + key)
    assert res.rc != 0
    assert re.search(r"certificate|tls|deadline", res.stderr, re.I), res.stderr
    # the control plane's own cert is accepted (positive control)
    ok(lab, "master-01", sudo(lab.outputs["etcdctlEnv"] + f"ETCDCTL_ENDPOINTS={ep} etcdctl get x"))


def test_peer_port_admits_member_peer_certs_only(lab):
    """From etcd-02 (the firewall lets members reach 2380): its peer cert is
    admitted on etcd-01's peer port; its healthcheck client cert, signed by
    the etcd CA, is not."""
    url = f"https://{ips(lab)['etcd-01']}:2380/members"
    curl = "curl -s --http1.1 -o /dev/null -w '%{http_code}' --max-time 5 --cacert /etc/etcd/pki/peer-ca.crt"
    assert ok(lab, "etcd-02", sudo(f"{curl} --cert /etc/etcd/pki/peer.crt --key /etc/etcd/pki/peer.key {url}")) == "200"
    res = lab.sh("etcd-02", sudo(f"{curl} --cert /etc/etcd/pki/healthcheck-client.crt "
                                 f"--key /etc/etcd/pki/healthcheck-client.key {url}"))
    assert res.rc != 0 and res.stdout == "000", (res.rc, res.stdout, res.stderr)


def tcp_connects(lab, node: str, target: str, port: int) -> bool:
    return lab.sh(node, f"timeout 3 bash -c 'exec 3<>/dev/tcp/{ips(lab)[target]}/{port}'").rc == 0


def test_firewall_drops_etcd_ports_from_other_hosts(lab):
    def connects(node, target, port):
        return tcp_connects(lab, node, target, port)
    assert not connects("lb-01", "etcd-01", 2379)          # neither control plane nor member
    assert not connects("lb-01", "etcd-01", 2380)
    assert not connects("master-01", "etcd-01", 2380)      # clients are no peers
    assert connects("master-01", "etcd-01", 2379)
    assert connects("etcd-02", "etcd-01", 2380)
    counters = ok(lab, "etcd-01", sudo("nft list table inet hakube_etcd"))
    assert re.search(r"counter packets [1-9]", counters), counters


def test_turning_the_firewall_off_removes_the_rules_and_turning_it_on_restores_them(lab):
    """`etcd.firewall: false` then true again, each one `pulumi up`: off,
    every member's table is gone and lb-01 reaches 2379; on, the rules are
    back and lb-01 is dropped again. etcd keeps running throughout."""
    def connects(node, target, port):
        return tcp_connects(lab, node, target, port)
    pids = {m: ok(lab, m, "systemctl show -p MainPID --value etcd").strip() for m in ETCD}
    lab.raw["etcd"] = {**lab.raw["etcd"], "firewall": False}
    try:
        lab.apply()
        for m in ETCD:
            assert lab.sh(m, "sudo -n nft list table inet hakube_etcd").rc != 0, m
            assert ok(lab, m, "systemctl is-enabled hakube-etcd-firewall.service || true").strip() != "enabled"
        assert connects("lb-01", "etcd-01", 2379)
    finally:
        lab.raw["etcd"] = {**lab.raw["etcd"], "firewall": True}
    lab.apply()
    for m in ETCD:
        ok(lab, m, "sudo -n nft list table inet hakube_etcd")
    assert not connects("lb-01", "etcd-01", 2379)
    assert connects("etcd-02", "etcd-01", 2380)
    assert {m: ok(lab, m, "systemctl show -p MainPID --value etcd").strip() for m in ETCD} == pids


def test_key_files_are_0600_and_the_data_dir_0700(lab):
    for node in ETCD:
        out = ok(lab, node, sudo("stat -c '%n %a %U' /etc/etcd/pki/server.key /etc/etcd/pki/peer.key "
                                 "/etc/etcd/pki/healthcheck-client.key /var/lib/etcd"))
        assert out.split("\n")[:4] == ["/etc/etcd/pki/server.key 600 etcd", "/etc/etcd/pki/peer.key 600 etcd",
                                       "/etc/etcd/pki/healthcheck-client.key 600 root", "/var/lib/etcd 700 etcd"]
    out = ok(lab, "master-01", sudo("stat -c '%n %a %U' /etc/kubernetes/pki/apiserver-etcd-client.key "
                                    "/root/certs/client.key"))
    assert out.split() == ["/etc/kubernetes/pki/apiserver-etcd-client.key", "600", "root",
                           "/root/certs/client.key", "600", "root"]


# --- quorum: the seed's objective 5 ------------------------------------------

WRITE_LOOP = r"""
. /dev/stdin
i=0
while [ ! -e /tmp/hakube-loop.stop ]; do
  i=$((i + 1))
  t0=$(date +%s%3N)
  if etcdctl --command-timeout=2s --dial-timeout=1s put "quorum/$i" "$i" >/dev/null 2>&1; then r=ok; else r=fail; fi
  echo "$i $r $t0 $(( $(date +%s%3N) - t0 ))"
  sleep 0.1
done
touch /tmp/hakube-loop.done
"""


def loop_lines(lab):
    out = ok(lab, "master-01", "sudo -n cat /tmp/hakube-loop.log")
    return [(int(i), r, int(t), int(d)) for i, r, t, d in (line.split() for line in out.splitlines() if line)]


def now_ms(lab):
    return int(ok(lab, "master-01", "date +%s%3N").strip())


def test_quorum_one_member_down_writes_go_on_two_down_they_fail_fast_none_lost(lab):
    env = lab.outputs["etcdctlEnv"]
    ok(lab, "master-01", "sudo -n rm -f /tmp/hakube-loop.stop /tmp/hakube-loop.log")
    ok(lab, "master-01", "sudo -n bash -c " + shlex.quote(
        f"printf %s {shlex.quote(env)} > /tmp/hakube-loop.env; "
        f"nohup bash -c {shlex.quote(WRITE_LOOP)} < /tmp/hakube-loop.env > /tmp/hakube-loop.log 2>&1 &"))
    t0 = time.monotonic()
    try:
        time.sleep(3)
        ok(lab, "etcd-03", "sudo -n systemctl stop etcd")
        one_down = now_ms(lab)
        time.sleep(5)
        second_stop = now_ms(lab)               # no write after this counts as "one down"
        ok(lab, "etcd-02", "sudo -n systemctl stop etcd")
        two_down = now_ms(lab)
        time.sleep(8)
        back = now_ms(lab)
        ok(lab, "etcd-02", "sudo -n systemctl start --no-block etcd")
        ok(lab, "etcd-03", "sudo -n systemctl start --no-block etcd")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if [x for x in loop_lines(lab) if x[2] > back + 2000 and x[1] == "ok"]:
                break
            time.sleep(1)
        time.sleep(2)
    finally:
        ok(lab, "master-01", "sudo -n touch /tmp/hakube-loop.stop")
        time.sleep(2.5)
    seconds = time.monotonic() - t0
    lines = loop_lines(lab)
    # a write counts in a phase if it started and ended inside it
    one = [x for x in lines if one_down + 1000 < x[2] and x[2] + x[3] < second_stop]
    two = [x for x in lines if two_down + 3000 < x[2] and x[2] + x[3] < back]
    after = [x for x in lines if x[2] > back + 2000]
    assert one and all(r == "ok" for _, r, _, _ in one), f"writes with one member down: {one}"
    assert two and all(r == "fail" for _, r, _, _ in two), f"writes without quorum: {two}"
    assert max(d for *_, d in two) < 4000, "a write without quorum hung instead of failing"
    assert [x for x in after if x[1] == "ok"], "writes did not resume"
    acked = {i for i, r, _, _ in lines if r == "ok"}
    keys = ok(lab, "master-01", sudo(env + "etcdctl get quorum/ --prefix --keys-only"))
    stored = {int(k.split("/")[1]) for k in keys.split()}
    assert acked <= stored, f"acknowledged writes lost: {sorted(acked - stored)[:20]}"
    TIMINGS[f"quorum scenario ({len(acked)} writes acked, 0 lost)"] = seconds
    # every member back, healthy and listed (the program's own gate)
    ok(lab, "etcd-01", lab.runs[-1].by_name("hakube-etcd-health").inputs["create"])


def test_snapshot_save_gives_a_valid_snapshot(lab):
    out = ok(lab, "etcd-01", sudo(
        f"{HC} --endpoints=https://127.0.0.1:2379 snapshot save /var/tmp/lab.db >/dev/null && "
        "etcdutl snapshot status /var/tmp/lab.db -w json"))
    status = json.loads(out)
    assert status["totalKey"] > 0 and status["revision"] > 0 and status["hash"] != 0


# --- scheduled backups (the lab stack: every 10 s, keep 2) -------------------

# The script's own lines are read by its syslog identifier: journald cannot
# always tie a line of a process that exits at once to its unit (`-u`).
def test_timer_made_snapshots_are_checked_and_retention_deletes_the_oldest(lab):
    latest = lab.outputs["etcdLatestSnapshot"]
    path, keep = latest["path"], latest["retention"]
    folder = path.rsplit("/", 1)[0]

    def snapshots():
        return ok(lab, "etcd-01", sudo(f"ls -1 {folder}/etcd-*.db 2>/dev/null | sort || true")).split()

    t0 = time.monotonic()
    while not snapshots():
        assert time.monotonic() - t0 < 60, "the timer made no snapshot in 60 s"
        time.sleep(1)
    first = snapshots()[0]
    while first in snapshots():
        assert time.monotonic() - t0 < 120, f"retention never deleted {first}"
        time.sleep(1)
    TIMINGS[f"backups: first timer snapshot deleted by retention (keep {keep})"] = time.monotonic() - t0
    assert len(snapshots()) == keep
    journal = ok(lab, "etcd-01", sudo("journalctl -t hakube-etcd-backup -o cat --no-pager"))
    assert f"retention: deleted {first}" in journal
    assert re.search(r"snapshot \S+ ok: \{.*\"hash\":[1-9]", journal), journal[-500:]
    status = json.loads(ok(lab, "etcd-01", sudo(f"etcdutl snapshot status {path} -w json")))
    assert status["revision"] > 0 and status["hash"] != 0


def leader_of(lab) -> str:
    eps = ",".join(f"https://{ips(lab)[m]}:2379" for m in ETCD)
    statuses = json.loads(ok(lab, "etcd-01", sudo(f"{HC} --endpoints={eps} endpoint status -w json")))
    leader = statuses[0]["Status"]["leader"]
    ip = next(s["Endpoint"] for s in statuses if s["Status"]["header"]["member_id"] == leader).split("//")[1].split(":")[0]
    return next(m for m in ETCD if ips(lab)[m] == ip)


def offsite_snapshots(lab) -> list[str]:
    return sorted((n for n in lab.offsite.listing(lab.ssh) if n.endswith(".db")), key=lambda n: n.rsplit("-", 1)[1])


def test_snapshots_are_copied_off_host_by_the_leader_checked_and_kept_to_the_retention(lab):
    """etcd.backup.offsite (an SFTP store on a lab host of its own): each
    timer snapshot of the leader is copied there with its sha256 next to it,
    read back and compared; the oldest copies past the off-host retention go;
    followers copy nothing."""
    keep = lab.spec.etcd.backup.offsite.retention
    t0 = time.monotonic()
    first = None
    while True:
        names = offsite_snapshots(lab)
        if names and first is None:
            first = names[0]
            TIMINGS["off-host: first copy on the SFTP store (from the first check)"] = time.monotonic() - t0
        if first and first not in names:
            break
        assert time.monotonic() - t0 < 150, f"off-host retention never deleted {first}: {names}"
        time.sleep(1)
    TIMINGS[f"off-host: first copy deleted by the off-host retention (keep {keep})"] = time.monotonic() - t0
    listing = lab.offsite.listing(lab.ssh)
    names = offsite_snapshots(lab)
    assert keep - 1 <= len(names) <= keep, names
    for name in names:
        sidecar = lab.offsite.read(lab.ssh, f"{name}.sha256").split()
        assert sidecar[1] == name
        assert ok_offsite(lab, f"sha256sum etcd/lab/{name}").split()[0] == sidecar[0]
        assert listing[name] > 0
    leader = leader_of(lab)
    journal = {m: ok(lab, m, sudo("journalctl -t hakube-etcd-backup -o cat --no-pager -n 200")) for m in ETCD}
    assert re.search(r"off-host copy sftp://offsite@\S+/etcd/lab/\S+ ok: sha256 [0-9a-f]{64} read back",
                     journal[leader]), journal[leader][-800:]
    followers = [m for m in ETCD if m != leader]
    assert all("does not lead the cluster; the leader copies" in journal[m] for m in followers)
    # the member's record of its last copy, which `make status` reads
    last = ok(lab, leader, sudo("cat /var/backups/etcd/offsite.last")).split()
    assert last[0] in names or last[0] > names[-1], (last, names)


def ok_offsite(lab, command: str) -> str:
    res = lab.ssh.run(lab.offsite.connection(), command)
    assert res.rc == 0, f"offsite: {command}\n{res.stdout}\n{res.stderr}"
    return res.stdout


def test_a_snapshot_never_starts_a_stopped_etcd_it_fails_loudly(lab):
    ok(lab, "etcd-03", "sudo -n systemctl stop etcd")
    try:
        res = lab.sh("etcd-03", "sudo -n systemctl start hakube-etcd-backup.service")
        assert res.rc != 0
        assert lab.sh("etcd-03", "systemctl is-active etcd").stdout.strip() != "active"
        assert "failed" in lab.sh("etcd-03", "systemctl is-failed hakube-etcd-backup.service").stdout
        journal = ok(lab, "etcd-03", sudo("journalctl -t hakube-etcd-backup -o cat --no-pager -n 50"))
        assert "etcd is not running on etcd-03: no snapshot taken" in journal
    finally:
        ok(lab, "etcd-03", "sudo -n systemctl start etcd")


# --- operating: make status, metrics -----------------------------------------

def test_status_reads_every_live_host_and_names_a_stopped_member(lab):
    """`make status`'s probe on every lab host over real SSH: three members,
    one leader, none behind; backups fresh; certificates; HAProxy's backends
    (no apiserver runs yet in practice mode: their state is not judged here)
    and the VIP on lb-01. Then a member
    stopped by hand is a problem named in words, and the exit status says so."""
    from ops import status
    t0 = time.monotonic()
    seen = status.probe_all(lab.outputs)
    TIMINGS["status: every host read"] = time.monotonic() - t0
    st = status.analyse(lab.outputs, seen, stack="lab")
    # a lab just up may not have its first backups yet (every 10 s): status says so until they come
    for _ in range(20):
        if not [p for p in st.problems if "HAProxy backend" not in p]:
            break
        time.sleep(2)
        st = status.analyse(lab.outputs, status.probe_all(lab.outputs), stack="lab")
    assert [p for p in st.problems if "HAProxy backend" not in p] == [], st.problems
    assert sorted(m["role"] for m in st.members) == ["follower", "follower", "leader"]
    assert all(m["behind"] <= 10 and m["version"] == versions.etcd_default() for m in st.members)
    assert {b["name"] for b in st.backups if b.get("newestTime") and b["ageSeconds"] < 120} == set(ETCD)
    assert {b["intervalSeconds"] for b in st.backups} == {10}            # the lab's "*:*:0/10"
    assert {c["node"] for c in st.certificates if c["path"] == "/etc/etcd/pki/server.crt"} == set(ETCD)
    assert [lb["name"] for lb in st.load_balancers if lb["holdsVip"]] == ["lb-01"]
    assert {s["server"] for s in st.load_balancers[0]["servers"]} == {"master-01", "master-02"}
    ok(lab, "etcd-03", "sudo -n systemctl stop etcd")
    try:
        st = status.analyse(lab.outputs, status.probe_all(lab.outputs), stack="lab")
        assert any(p.startswith("etcd-03: etcd does not answer (inactive") for p in st.problems), st.problems
        assert status.render(st).splitlines()[2:4] == ["PROBLEMS", f"  {st.problems[0]}"]
    finally:
        ok(lab, "etcd-03", "sudo -n systemctl start etcd")


def _get(url: str, timeout: float = 5) -> str:
    import urllib.request
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def test_metrics_reach_the_monitoring_sources_only_and_every_rule_metric_exists(lab):
    """etcd's metrics listener and HAProxy's exporter answer the lab host (the
    stack's monitoring.sources) and nobody else; every metric the alert
    rules use is in what a real etcd 3.5 and HAProxy 2.6 serve."""
    from components import monitoring
    ip = ips(lab)
    etcd_text = _get(f"http://{ip['etcd-01']}:2381/metrics")
    haproxy_text = _get(f"http://{ip['lb-01']}:8405/metrics")
    for node, url in (("master-01", f"http://{ip['etcd-02']}:2381/metrics"),
                      ("master-01", f"http://{ip['lb-01']}:8405/metrics")):
        res = lab.sh(node, f"curl -s --max-time 3 -o /dev/null {url}")
        assert res.rc != 0, f"{url} answered {node}, which is not a monitoring source"
    # hakube's exporter (socket-activated probe.py): backups and certificates, to the sources only
    t0 = time.time()
    node_text = "".join(_get(f"http://{ip[n]}:9479/metrics") for n in ("etcd-01", "etcd-02", "etcd-03", "master-01"))
    TIMINGS["hakube exporter: 4 nodes scraped"] = time.time() - t0
    newest = [float(v) for v in re.findall(r"^hakube_etcd_backup_last_success_timestamp_seconds (\S+)$",
                                           node_text, re.M)]
    assert len(newest) == 3 and all(t0 - v < 60 for v in newest), newest        # the lab's timer: every 10 s
    assert re.findall(r"^hakube_etcd_backup_interval_seconds (\S+)$", node_text, re.M) == ["10"] * 3
    copies = [float(v) for v in re.findall(r"^hakube_etcd_backup_offsite_last_success_timestamp_seconds (\S+)$",
                                           node_text, re.M)]
    assert len(copies) == 3 and t0 - max(copies) < 60, copies                  # the leader's is recent
    assert re.search(r'^hakube_certificate_expiry_timestamp_seconds\{path="/etc/kubernetes/pki/apiserver-etcd-client'
                     r'.crt"\} \d+$', node_text, re.M), node_text[-600:]
    denied = lab.sh("master-01", f"curl -s --max-time 3 -o /dev/null -w '%{{http_code}}' http://{ip['etcd-02']}:9479/metrics")
    assert denied.stdout.strip() == "403", denied.stdout + denied.stderr
    used = set()
    for group in monitoring.rules()["groups"]:
        for rule in group["rules"]:
            used |= set(re.findall(r"([a-z_]+)(?:_bucket)?\{", rule["expr"])) - {"up", "by", "sum", "count"}
    for metric in sorted(used):
        assert re.search(rf"^{metric}(_bucket)?[{{ ]", etcd_text + haproxy_text + node_text, re.M), \
            f"{metric} is scraped nowhere"
    assert 'haproxy_server_status{proxy="kube-apiservers",server="master-01",state="UP"}' in haproxy_text


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus (Debian; .ci/run installs it)")
def test_prometheus_scrapes_the_lab_and_a_stopped_member_fires_its_alert(lab, tmp_path):
    """A real Prometheus on the lab bridge, with the stack's scrape configs and
    rules as output (scraping every second): every target up; etcd-03
    stopped: up goes 0 and HakubeEtcdMemberDown fires. Its `for: 1m` is
    shortened to 5 s here: what the lab proves is the shipped expression on
    real metrics; how long a rule holds before it fires is Prometheus's own,
    and `promtool test rules` checks each rule's with its shipped duration
    (test_monitoring.py)."""
    import urllib.parse
    jobs = yaml.safe_load(lab.outputs["prometheusScrapeConfigs"])
    for job in jobs:
        # etcd's and HAProxy's every second (the member-down timing); hakube's
        # exporter, whose figures change by the minute, as shipped
        job["scrape_interval"] = "1s" if not job["job_name"].endswith("-node") else job["scrape_interval"]
    targets = sum(len(c["targets"]) for job in jobs for c in job["static_configs"])
    rules = yaml.safe_load(lab.outputs["prometheusRules"])
    down = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "HakubeEtcdMemberDown"]
    assert [r["for"] for r in down] == ["1m"]
    down[0]["for"] = "5s"
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yml")], "scrape_configs": jobs}))
    gateway = lab.spec.network.gateway
    api = f"http://{gateway}:19090/api/v1"
    proc = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address={gateway}:19090"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "w"))

    def query(q: str) -> list:
        try:
            return json.loads(_get(f"{api}/query?query={urllib.parse.quote(q)}"))["data"]["result"]
        except OSError:
            return []

    def not_up() -> str:
        """Each target Prometheus does not see up, with its last scrape error."""
        try:
            active = json.loads(_get(f"{api}/targets"))["data"]["activeTargets"]
        except OSError as err:
            return f"targets unreadable: {err}"
        return "; ".join(f"{t['scrapeUrl']}: {t['health']} {t.get('lastError', '')}" for t in active
                         if t["health"] != "up") or "all up"

    def wait(what: str, cond, limit: float, since: float | None = None) -> float:
        t0 = time.monotonic() if since is None else since
        while time.monotonic() - t0 < limit:
            if cond():
                return time.monotonic() - t0
            time.sleep(0.5)
        raise AssertionError(f"{what}: not within {limit} s; {not_up()}; "
                             f"{(tmp_path / 'prometheus.log').read_text()[-1500:]}")

    try:
        # hakube's exporter keeps its shipped 15 s interval and 10 s timeout:
        # a few scrapes' time with the lab's three modules on two cores
        wait(f"every target up ({targets})", lambda: len([r for r in query("up == 1")]) == targets, 120)
        stopped = time.monotonic()
        ok(lab, "etcd-03", "sudo -n systemctl stop etcd")
        try:
            TIMINGS["prometheus: stopped member seen down (from the stop)"] = wait(
                "etcd-03 down", lambda: query('up{node="etcd-03"} == 0') != [], 30, since=stopped)
            TIMINGS["prometheus: HakubeEtcdMemberDown firing (from the stop; `for` 5 s here)"] = wait(
                "the alert firing", lambda: query('ALERTS{alertname="HakubeEtcdMemberDown",alertstate="firing",'
                                                  'node="etcd-03"}') != [], 90, since=stopped)
            assert query('ALERTS{alertname="HakubeEtcdInsufficientMembers"}') == []
        finally:
            ok(lab, "etcd-03", "sudo -n systemctl start etcd")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_etcd_preflight_fails_clearly_when_an_endpoint_is_stopped(lab):
    preflight = lab.runs[-1].by_name("hakube-cp-master-01-etcd-preflight").inputs["create"]
    ok(lab, "master-01", preflight)
    ok(lab, "etcd-03", "sudo -n systemctl stop etcd")
    try:
        res = lab.sh("master-01", preflight)
        assert res.rc != 0
        assert f"FAIL https://{ips(lab)['etcd-03']}:2379" in res.stderr
        assert "no TCP connection" in res.stderr, res.stderr
        assert f"ok   https://{ips(lab)['etcd-01']}:2379" in res.stdout
    finally:
        ok(lab, "etcd-03", "sudo -n systemctl start etcd")
    ok(lab, "master-01", preflight)


# --- idempotency: a second run of the program changes nothing ----------------

STATE = sudo(
    "for u in etcd haproxy containerd; do systemctl is-active -q $u && echo \"$u $(systemctl show -p MainPID --value $u)\"; done; "
    "find /etc/etcd /etc/haproxy /etc/kubernetes /etc/containerd /etc/nftables* /etc/systemd/system /root "
    "/usr/local/bin /usr/local/sbin /etc/hakube -type f 2>/dev/null | sort | xargs -r sha256sum")


def changes(before: dict, after: dict) -> dict:
    return {n: sorted(set(after[n].splitlines()) ^ set(before[n].splitlines()))
            for n in before if after[n] != before[n]}


def test_a_second_up_with_nothing_changed_runs_no_script(lab):
    """What a user sees: `pulumi up` again, "no changes"; nothing runs."""
    nodes = list(ips(lab))
    before = {n: ok(lab, n, STATE) for n in nodes}
    since = len(lab.mocks.steps)
    t0 = time.monotonic()
    lab.apply()
    TIMINGS["lab second up, nothing changed (0 scripts)"] = time.monotonic() - t0
    assert lab.mocks.steps[since:] == [], [s.name for s in lab.mocks.steps[since:]]
    assert {s.op for s in lab.runs[-1].steps} == {"same"}
    assert not changes(before, {n: ok(lab, n, STATE) for n in nodes})


def test_every_step_run_again_changes_nothing(lab):
    """Idempotency, the steps' own promise: every Command replaced
    (`pulumi up --replace` of each), so every script runs again in the
    graph's order; no file and no etcd/HAProxy/containerd PID changes."""
    nodes = list(ips(lab))
    before = {n: ok(lab, n, STATE) for n in nodes}
    commands = lab.commands()
    since = len(lab.mocks.steps)
    t0 = time.monotonic()
    lab.apply(replace=tuple(commands))
    TIMINGS[f"lab: every step again ({len(commands)} replaced)"] = time.monotonic() - t0
    again = {s.name for s in lab.mocks.steps[since:]}
    skipped = {name for name, _ in lab.mocks.skipped}
    assert again | skipped == set(commands.values())
    assert not changes(before, {n: ok(lab, n, STATE) for n in nodes})
    pids = "\n".join(before.values())
    assert pids.count("etcd ") == 3 and "haproxy " in pids


def test_a_member_stopped_by_hand_stays_stopped_until_converge(lab):
    """Drift: `pulumi up` with no change runs nothing (the member stays
    down, as on a user's machine); `make converge` (the convergeTargets
    replaced) starts it, behind the cluster gate, and touches no running member."""
    ok(lab, "etcd-02", "sudo -n systemctl stop etcd")
    others = {n: ok(lab, n, "systemctl show -p MainPID --value etcd").strip() for n in ("etcd-01", "etcd-03")}
    since = len(lab.mocks.steps)
    lab.apply()
    assert lab.mocks.steps[since:] == []
    assert lab.sh("etcd-02", "systemctl is-active etcd").stdout.strip() != "active"
    t0 = time.monotonic()
    lab.apply(replace=lab.outputs["convergeTargets"])
    TIMINGS["converge: a stopped member started, every check run"] = time.monotonic() - t0
    ran = {s.name for s in lab.mocks.steps[since:]}
    assert {"hakube-etcd-etcd-02-start", "hakube-etcd-health", "hakube-lb-lb-01-haproxy"} <= ran
    assert not [n for n in ran if n.endswith(("-restart", "-install", "-certs"))], ran
    assert ok(lab, "etcd-02", "systemctl is-active etcd").strip() == "active"
    assert {n: ok(lab, n, "systemctl show -p MainPID --value etcd").strip() for n in others} == others


# --- certificate rotation under a write loop -----------------------------------

def served_subject(lab, node: str, target: str, port: int) -> str:
    ip = ips(lab)[target]
    return ok(lab, node, f"openssl s_client -connect {ip}:{port} </dev/null 2>/dev/null | "
                         "openssl x509 -noout -subject")


def test_rotation_reissues_certs_with_no_write_failing_longer_than_an_election(lab):
    env = lab.outputs["etcdctlEnv"]
    assert "rotation" not in served_subject(lab, "etcd-01", "etcd-02", 2379)
    ok(lab, "master-01", "sudo -n rm -f /tmp/hakube-loop.stop /tmp/hakube-loop.log")
    ok(lab, "master-01", "sudo -n bash -c " + shlex.quote(
        f"printf %s {shlex.quote(env)} > /tmp/hakube-loop.env; "
        f"nohup bash -c {shlex.quote(WRITE_LOOP)} < /tmp/hakube-loop.env > /tmp/hakube-loop.log 2>&1 &"))
    lab.raw["pki"] = {**lab.raw.get("pki", {}), "rotation": "lab-1"}
    before = lab.outputs["summary"]["certificatesNotAfter"]
    t0 = time.monotonic()
    try:
        time.sleep(2)
        lab.apply()
        TIMINGS["rotation: program run re-issuing certs, rolling restarts"] = time.monotonic() - t0
        time.sleep(2)
    finally:
        ok(lab, "master-01", "sudo -n touch /tmp/hakube-loop.stop")
        time.sleep(2.5)
    restarts = [s for s in lab.mocks.steps if s.name.endswith("-restart") and s.action == "update"]
    assert len(restarts) == 3, [s.name for s in restarts]
    lines = loop_lines(lab)
    assert len([x for x in lines if x[1] == "ok"]) > 20
    worst, start = 0, None            # the longest stretch without a successful write
    for _, r, t, d in lines:
        if r == "fail" and start is None:
            start = t
        elif r == "ok" and start is not None:
            worst, start = max(worst, t - start), None
    TIMINGS[f"rotation: longest write outage ({len(lines)} writes)"] = worst / 1000
    assert start is None and worst < 3000, f"writes failed for {worst} ms"
    for member in ETCD:
        for port, asker in ((2379, "etcd-01"), (2380, "etcd-02" if member == "etcd-01" else "etcd-01")):
            assert "rotation lab-1" in served_subject(lab, asker, member, port), (member, port)
    assert "rotation lab-1" in ok(lab, "master-01", sudo(
        "openssl x509 -noout -subject -in /etc/kubernetes/pki/apiserver-etcd-client.crt"))
    # the summary output (and each restart step's CERTS_NOT_AFTER) names the
    # served certificate's real expiry: later than before, the CAs unchanged
    after = lab.outputs["summary"]["certificatesNotAfter"]
    served = ok(lab, "etcd-02", sudo("openssl x509 -noout -enddate -in /etc/etcd/pki/server.crt")).split("=", 1)[1]
    assert dt.datetime.strptime(served.strip(), "%b %d %H:%M:%S %Y %Z").strftime("%Y-%m-%dT%H:%M:%SZ") == \
        after["etcd-02-server"]
    assert after["etcd-02-server"] > before["etcd-02-server"] and after["etcd-ca"] == before["etcd-ca"]
    from review import prelude, unwrap_script
    values, _ = prelude(unwrap_script(lab.runs[-1].by_name("hakube-etcd-etcd-02-restart").inputs["update"])[1])
    assert values["CERTS_NOT_AFTER"] == f"server {after['etcd-02-server']}, peer {after['etcd-02-peer']}"


def test_a_certificate_near_its_expiry_fails_each_nodes_check_naming_the_remedy(lab):
    """pki.validityHours 48 (early renewal 24): every leaf certificate is
    re-issued for two days; with pki.check.days 3, each node's
    hakube-cert-check unit (its timer runs it daily) fails: in the journal
    and `systemctl --failed`, naming the file, the date and `pulumi up`.
    Back to a year, the same check passes."""
    saved = dict(lab.raw.get("pki") or {})
    lab.raw["pki"] = {**saved, "validityHours": 48, "earlyRenewalHours": 24, "check": {"days": 3}}
    t0 = time.monotonic()
    try:
        lab.apply()
        TIMINGS["cert check: 48 h certificates issued, members restarted (program run)"] = time.monotonic() - t0
        for node in ("etcd-02", "master-01"):
            assert ok(lab, node, "systemctl is-active hakube-cert-check.timer").strip() == "active"
            run = lab.sh(node, "sudo -n systemctl start hakube-cert-check.service")
            assert run.rc != 0, f"{node}: the check passed with certificates expiring in 2 days"
            assert "hakube-cert-check.service" in ok(lab, node, "systemctl --failed --no-legend --plain")
            said = ok(lab, node, sudo("journalctl -u hakube-cert-check -o cat --no-pager -n 30"))
            crt = "/etc/etcd/pki/server.crt" if node.startswith("etcd") else KUBEADM_CLIENT_CERT
            line = next((x for x in said.splitlines() if crt in x), "")
            assert re.search(r"in (1 day|2 days) ", line) and "run `pulumi up` of stack lab" in line, said
    finally:
        lab.raw["pki"] = saved
        lab.apply()
    for node in ("etcd-02", "master-01"):
        ok(lab, node, "sudo -n systemctl reset-failed hakube-cert-check.service")
        ok(lab, node, "sudo -n systemctl start hakube-cert-check.service")
        assert "valid for more than 30 days" in ok(lab, node, sudo(
            "journalctl -u hakube-cert-check -o cat --no-pager -n 5"))


KUBEADM_CLIENT_CERT = "/etc/kubernetes/pki/apiserver-etcd-client.crt"


# --- restore from a snapshot named in stack config (runs last: it rewrites data) ---

def keyspace(lab, node: str) -> list:
    """This member's own view (serializable read on its own endpoint)."""
    out = ok(lab, node, sudo(f"{HC} --endpoints=https://127.0.0.1:2379 get '' --prefix "
                             "--consistency=s -w json"))
    kvs = json.loads(out).get("kvs", [])
    return sorted((kv["key"], kv["value"]) for kv in kvs)


def test_restore_brings_every_member_back_to_the_snapshot_exactly_and_runs_once(lab, tmp_path):
    check_restore(lab, tmp_path)


def check_restore(lab, tmp_path, on: str = ""):
    """etcd.restore of a snapshot taken here: every member comes back to it
    exactly, each restarted, its revision bumped and compacted (a watch from
    before is cancelled and cannot resume); the same key again restores
    nothing. `on` labels the timings (the day-two lab runs it on 3.7)."""
    env = lab.outputs["etcdctlEnv"]
    put = lambda cmd: ok(lab, "master-01", sudo(env + "etcdctl " + cmd))  # noqa: E731
    put("put restore/a 1")
    put("put restore/b 2")
    ok(lab, "etcd-01", sudo(f"{HC} --endpoints=https://127.0.0.1:2379 snapshot save /var/tmp/restore.db >/dev/null"))
    expected = keyspace(lab, "etcd-01")
    assert ("cmVzdG9yZS9h", "MQ==") in expected                      # restore/a = 1 (base64)
    snapshot = tmp_path / "restore.db"
    snapshot.write_bytes(base64.b64decode(ok(lab, "etcd-01", sudo("base64 -w0 /var/tmp/restore.db"))))
    put("put restore/a changed")
    put("del restore/b")
    put("put restore/c new")
    assert keyspace(lab, "etcd-01") != expected

    # A watch from before the restore, as the apiserver's are, and the
    # revision it had seen.
    ok(lab, "master-01", sudo("rm -f /tmp/hakube-watch.log; printf %s " + shlex.quote(env) + " > /tmp/hakube-watch.env; "
                              "nohup bash -c '. /tmp/hakube-watch.env; exec etcdctl watch restore/ --prefix' "
                              "> /tmp/hakube-watch.log 2>&1 &"))
    put("put restore/watched 1")
    seen = json.loads(ok(lab, "master-01", sudo(env + "etcdctl get restore/watched -w json")))["header"]["revision"]
    lab.raw["etcd"] = {**lab.raw["etcd"], "restore": {"snapshot": str(snapshot)}}
    pids = {m: ok(lab, m, "systemctl show -p MainPID --value etcd").strip() for m in ETCD}
    t0, since = time.monotonic(), len(lab.mocks.steps)
    lab.apply()
    TIMINGS[f"restore{on} (program run with etcd.restore set)"] = time.monotonic() - t0
    # etcdutl of the release the members run: every member's keyspace starts past
    # every revision a watcher saw, all of it compacted.
    data = [s for s in lab.mocks.steps[since:] if s.name.endswith("-data")]
    assert len(data) == len(ETCD), [s.name for s in data]
    for s in data:
        assert "revision bumped by 1000000000 and compacted" in s.stdout, (s.stdout, s.stderr)
        assert "has no --bump-revision" not in s.stderr
    status = json.loads(ok(lab, "etcd-01", sudo(f"{HC} --endpoints=https://127.0.0.1:2379 endpoint status -w json")))
    assert status[0]["Status"]["header"]["revision"] > 10 ** 9, status
    # That watch was cancelled by the server when the members stopped
    # (etcdctl watches require a leader), not left running on stale data.
    # The client learns it when it reconnects, which its backoff may put a
    # few seconds after the run.
    deadline = time.monotonic() + 30
    while True:
        watched = ok(lab, "master-01", "sudo -n cat /tmp/hakube-watch.log")
        if "watch is canceled by the server" in watched or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    TIMINGS[f"restore{on}: the watch from before it cancelled (after the run)"] = time.monotonic() - deadline + 30
    ok(lab, "master-01", "sudo -n pkill -f '[e]tcdctl watch restore/' || true")
    assert "restore/watched" in watched and "watch is canceled by the server" in watched, watched
    # ...and resuming it where it stopped, as a reflector does, is refused:
    # every revision it could ask for is compacted, so it must relist.
    resumed = lab.sh("master-01", sudo(env + f"timeout 10 etcdctl watch restore/ --prefix --rev={seen + 1}"))
    assert "required revision has been compacted" in resumed.stdout + resumed.stderr, resumed
    for m in ETCD:
        assert keyspace(lab, m) == expected, f"{m} differs from the snapshot"
        assert ok(lab, m, "systemctl show -p MainPID --value etcd").strip() != pids[m]   # it was restarted
    members = json.loads(ok(lab, "etcd-01", sudo(f"{HC} --endpoints=https://127.0.0.1:2379 member list -w json")))
    assert sorted(x["name"] for x in members["members"]) == list(ETCD)

    # the same snapshot named again: nothing is restored, nothing restarts
    pids = {m: ok(lab, m, "systemctl show -p MainPID --value etcd").strip() for m in ETCD}
    put("put restore/after 1")
    lab.apply()
    for m in ETCD:
        assert ok(lab, m, "systemctl show -p MainPID --value etcd").strip() == pids[m]
    assert ("cmVzdG9yZS9hZnRlcg==", "MQ==") in keyspace(lab, "etcd-02")


def snapshot_of(lab, tmp_path, label: str):
    """A snapshot of the cluster now, on this machine, and the keyspace it holds."""
    ok(lab, "etcd-01", sudo(f"{HC} --endpoints=https://127.0.0.1:2379 snapshot save /var/tmp/{label}.db >/dev/null"))
    path = tmp_path / f"{label}.db"
    path.write_bytes(base64.b64decode(ok(lab, "etcd-01", sudo(f"base64 -w0 /var/tmp/{label}.db"))))
    return path, keyspace(lab, "etcd-01")


BROKEN_ETCDUTL = sudo("mv /usr/local/bin/etcdutl /usr/local/bin/etcdutl.lab-aside && "
                      "printf '#!/bin/sh\\necho lab: etcdutl broken on purpose >&2\\nexit 1\\n' > /usr/local/bin/etcdutl && "
                      "chmod 755 /usr/local/bin/etcdutl")
FIXED_ETCDUTL = sudo("mv -f /usr/local/bin/etcdutl.lab-aside /usr/local/bin/etcdutl")


def wait_healthy(lab, timeout: float = 90):
    gate = lab.runs[-1].by_name("hakube-etcd-health").inputs["create"] if any(
        r.name == "hakube-etcd-health" for r in lab.runs[-1].registrations) else None
    deadline = time.monotonic() + timeout
    while True:
        res = lab.sh("etcd-01", gate)
        if res.rc == 0 or time.monotonic() > deadline:
            return res
        time.sleep(2)


def test_a_restore_that_failed_half_way_is_finished_by_the_next_run(lab, tmp_path):
    """etcdutl fails on etcd-03 only: etcd-01/02 restored, every member
    stopped, the run fails naming the cause. Fixed, the next run finishes the
    restore (the failed step and those after it run; the ones that succeeded
    do not run again, each script checks its own precondition): every
    member's keyspace equals the snapshot's. The snapshot never sat in a
    world-readable place."""
    env = lab.outputs["etcdctlEnv"]
    ok(lab, "master-01", sudo(env + "etcdctl put half/a 1"))
    snap, expected = snapshot_of(lab, tmp_path, "half")
    ok(lab, "master-01", sudo(env + "etcdctl put half/a changed"))
    ok(lab, "etcd-03", BROKEN_ETCDUTL)
    lab.raw["etcd"] = {**lab.raw["etcd"], "restore": {"snapshot": str(snap)}}
    since = len(lab.mocks.steps)
    try:
        with pytest.raises(StepFailed) as err:
            lab.apply()
    finally:
        ok(lab, "etcd-03", FIXED_ETCDUTL)
    assert "etcdutl broken on purpose" in err.value.output
    assert "-etcd-03-data" in str(err.value).split(":", 1)[0]
    ran = {s.name: s for s in lab.mocks.steps[since:]}
    assert not [n for n in ran if n.endswith("-start") and "restore" in n]      # nothing started half-restored
    upload = lab.sh("etcd-01", "stat -c '%a %U' /var/lib/hakube/upload").stdout.split()
    assert upload[0] == "700", upload
    t0 = time.monotonic()
    since = len(lab.mocks.steps)
    lab.apply()
    TIMINGS["restore half-failed, then finished by the next run"] = time.monotonic() - t0
    again = [s.name for s in lab.mocks.steps[since:] if s.action != "delete"]
    assert [n for n in again if n.endswith("-data")] == [n for n in again if "etcd-03-data" in n], again
    assert not [n for n in again if n.endswith("-stop")], again        # the members stayed stopped
    for m in ETCD:
        assert keyspace(lab, m) == expected, f"{m} differs from the snapshot"


def test_a_half_failed_restore_abandoned_brings_the_cluster_back_as_it_was(lab, tmp_path):
    """The same failure, then `etcd.restore` dropped from the stack: the
    restore's steps are deleted, and their deletes put back each member's
    data dir from before the restore and start etcd and its backups again.
    The keyspace is the one from before the restore was named."""
    env = lab.outputs["etcdctlEnv"]
    snap, _ = snapshot_of(lab, tmp_path, "abandoned")
    ok(lab, "master-01", sudo(env + "etcdctl put abandoned/after-snapshot yes"))
    before = keyspace(lab, "etcd-01")
    ok(lab, "etcd-03", BROKEN_ETCDUTL)
    lab.raw["etcd"] = {**lab.raw["etcd"], "restore": {"snapshot": str(snap)}}
    try:
        with pytest.raises(StepFailed):
            lab.apply()
    finally:
        ok(lab, "etcd-03", FIXED_ETCDUTL)
    assert lab.sh("etcd-01", "systemctl is-active etcd").stdout.strip() != "active"
    lab.raw["etcd"] = {k: v for k, v in lab.raw["etcd"].items() if k != "restore"}
    t0 = time.monotonic()
    run = lab.apply()
    assert run.deleted and all(r.name.startswith("hakube-etcd-restore") for r in run.deleted)
    gate = wait_healthy(lab)
    TIMINGS["restore half-failed, then abandoned: cluster back"] = time.monotonic() - t0
    assert gate.rc == 0, gate.stderr
    for m in ETCD:
        assert keyspace(lab, m) == before, f"{m} is not as it was before the restore"
        assert ok(lab, m, "systemctl is-active hakube-etcd-backup.timer").strip() == "active"


# --- off-host restore, lost quorum ---------------------------------------------

def newest_offsite_copy_after(lab, t_ms: int, timeout: float = 90) -> str:
    """The name of the first off-host copy made after `t_ms` (a host's clock, ms)."""
    stamp = dt.datetime.fromtimestamp(t_ms / 1000, dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    deadline = time.monotonic() + timeout
    while True:
        later = [n for n in offsite_snapshots(lab) if n.rsplit("-", 1)[1][:-3] > stamp]
        sidecars = lab.offsite.listing(lab.ssh)
        later = [n for n in later if f"{n}.sha256" in sidecars]
        if later:
            return later[0]
        assert time.monotonic() < deadline, f"no off-host copy after {stamp}: {offsite_snapshots(lab)}"
        time.sleep(1)


def test_a_restore_names_an_off_host_snapshot_and_each_member_fetches_and_checks_it(lab, tmp_path):
    """etcd.restore.offsite + sha256: every member fetches the named copy from
    the store itself and checks it against the pinned hash before anything
    stops; a wrong hash is refused with every member still running; the right
    one restores every member to the snapshot."""
    env = lab.outputs["etcdctlEnv"]
    put = lambda cmd: ok(lab, "master-01", sudo(env + "etcdctl " + cmd))  # noqa: E731
    put("put offsite/a before")
    name = newest_offsite_copy_after(lab, now_ms(lab) + 1000)
    # The lab snapshots every 10 s and keeps 3 copies off-host: the named copy
    # would be gone in ~30 s, sooner than two program runs take. The timers
    # stop here; the restore's last step starts them again.
    for m in ETCD:
        ok(lab, m, "sudo -n systemctl stop hakube-etcd-backup.timer")
    sha = lab.offsite.read(lab.ssh, f"{name}.sha256").split()[0]
    # `make backups` lists it with that hash, read through a member's own remote
    (tmp_path / "outputs.json").write_text(json.dumps(lab.outputs))
    listed = subprocess.run([sys.executable, "-m", "ops.backups", "--outputs", str(tmp_path / "outputs.json"),
                             "--json"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)["snapshots"]}
    assert rows[name]["sha256"] == sha and rows[name]["size"] > 0
    assert json.loads(listed.stdout)["url"].startswith("sftp://offsite@")
    put("put offsite/a after")
    put("put offsite/b after")
    pids = {m: ok(lab, m, "systemctl show -p MainPID --value etcd").strip() for m in ETCD}

    wrong = ("0" if sha[0] != "0" else "1") + sha[1:]
    lab.raw["etcd"] = {**lab.raw["etcd"], "restore": {"offsite": name, "sha256": wrong}}
    since = len(lab.mocks.steps)
    with pytest.raises(StepFailed) as err:
        lab.apply()
    assert f"has sha256 {sha}, not the {wrong}" in err.value.output, err.value.output
    assert not [s for s in lab.mocks.steps[since:] if s.name.endswith("-stop")]
    for m in ETCD:
        assert ok(lab, m, "systemctl show -p MainPID --value etcd").strip() == pids[m]

    lab.raw["etcd"] = {**lab.raw["etcd"], "restore": {"offsite": name, "sha256": sha}}
    t0, since = time.monotonic(), len(lab.mocks.steps)
    lab.apply()
    TIMINGS["restore from an off-host snapshot (program run: fetch, check, restore)"] = time.monotonic() - t0
    fetched = [s for s in lab.mocks.steps[since:] if s.name.endswith("-fetch")]
    assert len(fetched) == len(ETCD) and all("sha256 ok" in s.stdout for s in fetched), [s.stdout for s in fetched]
    for m in ETCD:
        got = ok(lab, m, sudo(f"{HC} --endpoints=https://127.0.0.1:2379 get offsite/ --prefix --consistency=s"))
        assert got.split() == ["offsite/a", "before"], (m, got)
    lab.raw["etcd"] = {k: v for k, v in lab.raw["etcd"].items() if k != "restore"}
    lab.apply()


def destroy_host(lab, node: str) -> None:
    """Power gone and disk gone: the host killed (no shutdown) and its disk emptied."""
    host = lab.mocks.hosts[f"hakube-{lab.spec.stack}-{node}"]
    # the container's init first: killing a PID namespace's init kills all
    # in it (nspawn's own process group does not hold the container's)
    os.kill(int(host.leader), signal.SIGKILL)
    os.killpg(host.process.pid, signal.SIGKILL)
    host.process.wait(10)
    host.discard()
    for part in ("upper", "work"):
        shutil.rmtree(host.disk / part)
        (host.disk / part).mkdir()


def voting_members(lab, node="etcd-01") -> dict[str, dict]:
    out = ok(lab, node, sudo(f"{HC} --endpoints=https://127.0.0.1:2379 member list -w json"))
    return {m.get("name", ""): m for m in json.loads(out)["members"]}


def test_lost_quorum_two_member_hosts_destroyed_recovered_from_the_survivor_whose_wal_lags(lab):
    check_lost_quorum_recovery(lab, wal_behind=True)


def applied_index(lab, node: str = "etcd-01") -> int:
    status = json.loads(ok(lab, node, sudo(f"{HC} --endpoints=https://127.0.0.1:2379 endpoint status -w json")))
    return int(status[0]["Status"]["raftAppliedIndex"])


def check_lost_quorum_recovery(lab, on: str = "", wal_behind: bool = False):
    """Under the write loop: etcd.recover.from set while the quorum answers is
    refused and changes nothing. Then etcd-02 and etcd-03 are destroyed (power
    and disk); a rebuild of etcd-02 alone is refused (its empty member would
    vote with no memory). etcd.recover.from: etcd-01 makes a one-member
    cluster of etcd-01's data in one run, in which the rebuilt etcd-02 joins
    as a learner and is promoted; rebuilding etcd-03 makes three voters. Every
    write acknowledged before the loss and present on the survivor is there
    afterwards; a plain run then runs nothing.

    wal_behind: the survivor's WAL lost its tail but its database did not (an
    unclean crash): etcd-01's WAL is put back to a copy taken before its last
    few hundred entries. etcd refuses --force-new-cluster there (etcd #22686:
    3.6.14 panics and leaves a WAL no start can read), and the recovery makes
    the one-member cluster from etcd-01's database file instead, with a new
    member ID and every key."""
    from .test_day_two import WriteLoop
    pid = ok(lab, "etcd-01", "systemctl show -p MainPID --value etcd").strip()
    lab.raw["etcd"] = {**lab.raw["etcd"], "recover": {"from": "etcd-01"}}
    with pytest.raises(StepFailed) as err:
        lab.apply()
    assert "refusing to recover: a quorum answers at etcd-01" in err.value.output, err.value.output
    assert ok(lab, "etcd-01", "systemctl show -p MainPID --value etcd").strip() == pid
    lab.raw["etcd"] = {k: v for k, v in lab.raw["etcd"].items() if k != "recover"}
    old_id = voting_members(lab)["etcd-01"]["ID"]

    with WriteLoop(lab) as loop:
        time.sleep(2)
        if wal_behind:
            # etcd-01's WAL as of now, kept; then etcd-01 applies 100 entries more
            ok(lab, "etcd-01", sudo("systemctl stop etcd && rm -rf /var/tmp/wal-then && "
                                    "cp -a /var/lib/etcd/member/wal /var/tmp/wal-then && systemctl start etcd"))
            then = applied_index(lab)
            deadline = time.monotonic() + 60
            while applied_index(lab) < then + 100:
                assert time.monotonic() < deadline, "etcd-01 applied no new entries in 60 s"
                time.sleep(1)
        t_loss = now_ms(lab)
        for node in ("etcd-02", "etcd-03"):
            destroy_host(lab, node)
        t_gone = now_ms(lab)
        time.sleep(3)
        survivor = ok(lab, "etcd-01", sudo(f"{HC} --endpoints=https://127.0.0.1:2379 get quorum/ --prefix "
                                           "--keys-only --consistency=s"))
        on_survivor = {int(k.split("/")[1]) for k in survivor.split()}

        since = len(lab.mocks.steps)
        with pytest.raises(StepFailed) as err:
            lab.apply(replace=[lab.outputs["rebuildTargets"]["etcd-02"]], rebuild="etcd-02")
        assert "refusing to start etcd-02 with no data" in err.value.output, err.value.output
        assert "hakube:etcd.recover.from" in err.value.output

        if wal_behind:
            ok(lab, "etcd-01", sudo("systemctl stop etcd && rm -rf /var/lib/etcd/member/wal && "
                                    "mv /var/tmp/wal-then /var/lib/etcd/member/wal"))
        lab.raw["etcd"] = {**lab.raw["etcd"], "recover": {"from": "etcd-01"}}
        t0, since = time.monotonic(), len(lab.mocks.steps)
        lab.apply()
        TIMINGS[f"lost quorum{on}: recovery run (etcd-01 alone, then etcd-02 joins)"] = time.monotonic() - t0
        ran = [s.name for s in lab.mocks.steps[since:]]
        assert ran.index("hakube-etcd-recover-etcd-01") < ran.index("hakube-etcd-etcd-02-start"), ran
        recover = next(s for s in lab.mocks.steps[since:] if s.name == "hakube-etcd-recover-etcd-01")
        assert "is a one-member cluster at revision" in recover.stdout, recover.stdout
        made_from_db = "was made anew from the database file" in recover.stdout
        assert made_from_db == wal_behind, recover.stdout
        if wal_behind:
            refusal = re.search(r"etcd: (state.commit \d+ is out of range \[\d+, \d+\]|"
                                r"adjusted commit index \d+ exceeds the last WAL entry index \d+)", recover.stdout)
            assert refusal, recover.stdout
            TIMINGS[f"lost quorum{on}: etcd refused --force-new-cluster ({refusal.group(1)}); made from its db"] = 0.0
        t0 = time.monotonic()
        lab.apply(replace=[lab.outputs["rebuildTargets"]["etcd-03"]], rebuild="etcd-03")
        TIMINGS[f"lost quorum{on}: rebuild of etcd-03 (joins, promoted)"] = time.monotonic() - t0
    lines = loop.lines
    acked_before = {i for i, r, t, _ in lines if r == "ok" and t < t_loss}
    after = [t for _, r, t, _ in lines if r == "ok" and t > t_gone]
    assert after, "no write was acknowledged after the recovery"
    TIMINGS[f"lost quorum{on}: no write accepted, from the loss to the first after recovery (a refused rebuild, then the recovery run)"] = (after[0] - t_gone) / 1000
    acked, failed, lost = loop.verdict()
    lost_before = sorted((acked_before & on_survivor) & set(lost))
    assert not lost_before, lost_before[:20]
    assert not lost, lost[:20]                  # none acked after the recovery either
    members = voting_members(lab)
    assert sorted(members) == list(ETCD) and not any(m.get("isLearner") for m in members.values()), members
    assert (members["etcd-01"]["ID"] != old_id) == wal_behind, (old_id, members)
    TIMINGS[f"lost quorum{on}: writes acked {acked}, failed {failed} (no quorum), lost 0"] = 0.0
    since = len(lab.mocks.steps)
    lab.apply()
    assert lab.mocks.steps[since:] == []
    lab.raw["etcd"] = {k: v for k, v in lab.raw["etcd"].items() if k != "recover"}
    since = len(lab.mocks.steps)
    run = lab.apply()
    assert [r.name for r in run.deleted] == ["hakube-etcd-recover-etcd-01"]
    assert lab.mocks.steps[since:] == []



# --- practice mode, as the learner runs it: kubeadm init on the external etcd --

def test_the_learners_kubeadm_init_brings_up_a_control_plane_on_the_external_etcd(lab):
    """The seed's part 4 as practice mode hands it out: on master-01, the
    `kubeadm init` line of the nextSteps output, run as printed, with the
    real kubeadm and kubelet 1.36.3 from the package step and the images
    given to containerd at bring-up. It finishes; master-01 registers (NotReady:
    no CNI yet); the apiserver, controller manager and scheduler run as
    static pods and there is no etcd manifest or pod; the apiserver's
    --etcd-servers are the external members; the cluster's keys are under
    /registry in the external etcd. Last in this module: kubelet stays up
    until teardown."""
    line = next(c for c in lab.outputs["nextSteps"] if "kubeadm init" in c)
    command = line.split("#")[0].strip().removeprefix("sudo ")
    assert "--ignore-preflight-errors=SystemVerification" in command        # kubernetes.allowCgroupV1 (cgroup v1 here)
    # the kernel step turned forwarding on (in the node's network namespace)
    assert ok(lab, "master-01", "cat /proc/sys/net/ipv4/ip_forward").strip() == "1"
    t0 = time.monotonic()
    # its output carries a join token and a certificate key: shown only on failure
    res = lab.sh("master-01", sudo(f"{command} >/var/tmp/init.log 2>&1; rc=$?; if [ $rc = 0 ]; then "
                                   "grep -o 'control-plane has initialized successfully' /var/tmp/init.log; "
                                   "else tail -40 /var/tmp/init.log; fi; exit $rc"))
    TIMINGS["practice mode: the learner's kubeadm init on master-01"] = time.monotonic() - t0
    assert res.rc == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "control-plane has initialized successfully", res.stdout
    k = f"KUBECONFIG=/etc/kubernetes/admin.conf kubectl --server https://{ips(lab)['master-01']}:6443 "
    nodes = ok(lab, "master-01", sudo(k + "get nodes --no-headers -o custom-columns=N:.metadata.name,V:.status.nodeInfo.kubeletVersion"))
    assert nodes.split() == ["master-01", f"v{lab.spec.kubernetes.version}"], nodes
    deadline = time.monotonic() + 90
    while True:
        pods = ok(lab, "master-01", sudo(k + "-n kube-system get pods --no-headers "
                                         "-o custom-columns=N:.metadata.name,P:.status.phase"))
        running = {n.rsplit("-master-01", 1)[0] for n, phase in (line.split() for line in pods.splitlines())
                   if phase == "Running" and n.endswith("-master-01")}
        if running >= {"kube-apiserver", "kube-controller-manager", "kube-scheduler"} or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert running >= {"kube-apiserver", "kube-controller-manager", "kube-scheduler"}, pods
    assert "etcd" not in pods, pods
    manifests = ok(lab, "master-01", sudo("ls /etc/kubernetes/manifests")).split()
    assert sorted(manifests) == ["kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml"]
    servers = re.search(r"--etcd-servers=(\S+)", ok(lab, "master-01", sudo("cat /etc/kubernetes/manifests/kube-apiserver.yaml")))
    assert servers and sorted(servers.group(1).split(",")) == sorted(f"https://{ips(lab)[n]}:2379" for n in ETCD)
    keys = ok(lab, "etcd-01", sudo(f"{HC} --endpoints=https://127.0.0.1:2379 get /registry/namespaces/ --prefix --keys-only"))
    assert "/registry/namespaces/kube-system" in keys.split(), keys
    # kubelet's pods would hold the host's shutdown (a container that ignores SIGTERM: 90 s)
    lab.sh("master-01", sudo("systemctl stop kubelet; crictl rmp -fa >/dev/null 2>&1"))
