"""`make status`'s reading of what the nodes' probes print (components/steps/probe.py's
JSON): each failure that matters named in words, exit status from it. The
probe itself runs against the lab's real hosts (tests/lab)."""
import json

from ops import status

NOW = 1_800_000_000.0
OUTPUTS = {"nodeIps": {"lb-01": "10.0.0.91", "etcd-01": "10.0.0.201", "etcd-02": "10.0.0.202",
                       "etcd-03": "10.0.0.203", "master-01": "10.0.0.101"},
           "sshUser": "hakube", "sshPrivateKey": "k", "knownHosts": "", "vip": "10.0.0.100",
           "summary": {"etcd": {"members": ["etcd-01", "etcd-02", "etcd-03"]}, "loadBalancers": ["lb-01"]}}
IDS = {"etcd-01": "8e9e05c52164694d", "etcd-02": "91bc3c398fb3c146", "etcd-03": "fd422379fda50e48"}


def member(name, raft=5000, leader="etcd-01", alarms=(), learner=False, db=20_000, backup_age=600.0):
    return {"host": name, "addresses": [OUTPUTS["nodeIps"][name]],
            "certificates": [{"path": "/etc/etcd/pki/server.crt", "notAfter": NOW + 300 * 86400, "subject": "CN=x"}],
            "etcd": {"active": "active", "alarms": list(alarms), "quotaBytes": 2 * 1024 ** 3,
                     "status": {"memberId": IDS[name], "leader": IDS[leader] if leader else "0",
                                "version": "3.5.1", "dbSize": db, "dbSizeInUse": db // 2, "raftIndex": raft,
                                "raftTerm": 2, "raftAppliedIndex": raft, "isLearner": learner, "errors": []},
                     "backups": {"enabled": True, "dir": "/var/backups/etcd", "count": 3,
                                 "newest": "/var/backups/etcd/etcd-x.db", "newestTime": NOW - backup_age,
                                 "newestSize": 20_480, "lastResult": "success", "intervalSeconds": 21600}}}


def healthy():
    seen = {m: member(m) for m in IDS}
    seen["lb-01"] = {"host": "lb-01", "addresses": ["10.0.0.91", "10.0.0.100"], "certificates": [],
                     "haproxy": {"servers": [{"backend": "kube-apiserver", "server": "master-01", "status": "UP",
                                              "checkStatus": "L7OK"}]}}
    seen["master-01"] = {"host": "master-01", "addresses": ["10.0.0.101"], "certificates": [
        {"path": "/etc/kubernetes/pki/apiserver.crt", "notAfter": NOW + 200 * 86400, "subject": "CN=kube-apiserver"}]}
    return seen


def test_a_healthy_stack_has_no_problem_and_names_the_leader():
    st = status.analyse(OUTPUTS, healthy(), now=NOW, stack="dev")
    assert st.problems == [] and st.notes == []
    assert [(m["name"], m["role"], m["behind"]) for m in st.members] == \
        [("etcd-01", "leader", 0), ("etcd-02", "follower", 0), ("etcd-03", "follower", 0)]
    text = status.render(st)
    assert text.startswith("hakube status: stack dev: healthy")
    assert "lb-01      holds the VIP" in text and "master-01 UP" in text
    assert json.loads(json.dumps(st.as_json()))["ok"] is True


def test_each_failure_is_named_in_words():
    seen = healthy()
    seen["etcd-01"] = member("etcd-01", raft=12000)
    seen["etcd-02"] = member("etcd-02", raft=5000, alarms=["memberID:2 alarm:NOSPACE"])    # 7000 behind
    seen["etcd-03"] = member("etcd-03", raft=12000)
    seen["etcd-03"] = member("etcd-03", raft=12000, backup_age=9 * 3600 + 2 * 21600)
    seen["etcd-03"]["etcd"]["backups"]["lastResult"] = "exit-code"
    seen["master-01"]["certificates"][0]["notAfter"] = NOW + 20 * 86400
    seen["lb-01"]["addresses"] = ["10.0.0.91"]
    seen["lb-01"]["haproxy"]["servers"][0].update(status="DOWN", checkStatus="L4TOUT")
    st = status.analyse(OUTPUTS, seen, now=NOW)
    assert "etcd-02 is 7000 entries behind the leader" in st.problems
    assert "etcd-02: etcd alarm memberID:2 alarm:NOSPACE (README: maintenance)" in st.problems
    assert "etcd-03: no backup for 21.0 h (the timer runs every 6.0 h)" in st.problems
    assert any(p.startswith("etcd-03: the last backup run failed (exit-code)") for p in st.problems)
    assert "master-01: certificate /etc/kubernetes/pki/apiserver.crt expires in 20 days" in st.problems
    assert "no load balancer holds the VIP 10.0.0.100" in st.problems
    assert "lb-01: HAProxy backend master-01 is DOWN (L4TOUT)" in st.problems
    assert status.render(st).splitlines()[2] == "PROBLEMS"


def test_a_member_down_no_leader_and_an_unreachable_host():
    seen = healthy()
    seen["etcd-01"]["etcd"] = {"active": "inactive", "alarms": [],
                               # etcdctl: its client's JSON log lines, then one line that says it
                               "error": '{"level":"warn","msg":"retrying of unary invoker failed"}\n'
                                        "context deadline exceeded",
                               "backups": seen["etcd-01"]["etcd"]["backups"]}
    for m in ("etcd-02", "etcd-03"):
        seen[m]["etcd"]["status"]["leader"] = "0"
    seen["master-01"] = {"error": "ssh: connect to host 10.0.0.101 port 22: No route to host"}
    st = status.analyse(OUTPUTS, seen, now=NOW)
    assert "etcd-01: etcd does not answer (inactive: context deadline exceeded)" in st.problems
    assert "etcd has no leader: no member can write" in st.problems
    assert "master-01 cannot be read: ssh: connect to host 10.0.0.101 port 22: No route to host" in st.problems


def test_a_database_near_its_quota_and_a_learner():
    seen = healthy()
    seen["etcd-03"] = member("etcd-03", db=int(0.9 * 2 * 1024 ** 3), learner=True)
    st = status.analyse(OUTPUTS, seen, now=NOW)
    assert any(p.startswith("etcd-03: its database is 1.9 GB, 90 % of its quota") for p in st.problems)
    assert "etcd-03 is a learner (not voting): a join that has not finished" in st.notes
    assert [m["role"] for m in st.members if m["name"] == "etcd-03"] == ["learner"]


def test_unreadable_outputs_exit_2(tmp_path, capsys):
    bad = tmp_path / "outputs.json"
    bad.write_text(json.dumps({**OUTPUTS, "sshPrivateKey": "[secret]"}))
    assert status.main(["--outputs", str(bad)]) == 2
    assert "--show-secrets" in capsys.readouterr().err
    assert status.main(["--outputs", str(tmp_path / "missing.json")]) == 2


def _offsite(seen, copies: dict[str, float | None], url="sftp://etcd@b.example/etcd/dev"):
    """Each member's record of its last off-host copy (age in seconds, None: never copied)."""
    for m, age in copies.items():
        record = {"url": url}
        if age is not None:
            record.update(name=f"etcd-{m}-x.db", sha256="ab" * 32, time=NOW - age)
        seen[m]["etcd"]["backups"]["offsite"] = record
    return seen


def test_the_newest_off_host_copy_of_any_member_counts_and_an_old_one_is_a_problem():
    # the leader changed: etcd-02 copied last, 1 h ago; etcd-01's record is a day old
    st = status.analyse(OUTPUTS, _offsite(healthy(), {"etcd-01": 86400, "etcd-02": 3600, "etcd-03": None}),
                        now=NOW, stack="dev")
    assert st.problems == []
    assert st.offsite["name"] == "etcd-etcd-02-x.db" and st.offsite["ageSeconds"] == 3600
    assert "sftp://etcd@b.example/etcd/dev: newest etcd-etcd-02-x.db, 60 min old" in status.render(st)
    old = status.analyse(OUTPUTS, _offsite(healthy(), {"etcd-01": 86400, "etcd-02": None, "etcd-03": None}),
                         now=NOW, stack="dev")
    assert old.problems == ["no off-host copy for 24.0 h in sftp://etcd@b.example/etcd/dev (snapshots every 6.0 h): "
                            "journalctl -t hakube-etcd-backup on the leader"]
    never = status.analyse(OUTPUTS, _offsite(healthy(), {"etcd-01": None, "etcd-02": None, "etcd-03": None}),
                           now=NOW, stack="dev")
    assert never.problems and never.problems[0].startswith("no off-host copy yet in sftp://")
