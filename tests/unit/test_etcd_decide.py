"""The decisions a node makes from etcd's answers (components/steps/etcd_decide.py,
installed as etcd.py), fed answers recorded from real etcd releases
(tests/unit/etcd_answers, written by `python -m tests.tools.etcd_answers`),
and the install step's upgrade check run as the node runs it."""
from __future__ import annotations

import subprocess
import sys
import json
from pathlib import Path

import pytest

from components import steps
from components.steps import etcd_decide as decide
from config import versions

ANSWERS = Path(__file__).parent / "etcd_answers"
RELEASES = sorted((p.name[1:] for p in ANSWERS.glob("v*")), key=lambda v: tuple(map(int, v.split("."))))
FLOORS = decide.floors_of(versions.etcd_upgrade_floors())
ETCD_PY = Path(decide.__file__)


def answer(release: str, state: str, what: str) -> str:
    return (ANSWERS / f"v{release}" / f"{state}.{what}.json").read_text()


def ask(release: str, state: str, target: str, final: bool = False, status_state: str | None = None,
        members: int = 3) -> str:
    return decide.upgrade(decide.parse_version(target), decide.cluster_version(answer(release, state, "version")),
                          decide.statuses(answer(release, status_state or state, "status")), members, FLOORS,
                          "etcd-01", final)


def next_minor(release: str) -> str:
    m = int(release.split(".")[1])
    return versions.newest_pinned(m + 1) or f"3.{m + 1}.0"


def test_answers_of_each_release_hakube_installs_are_recorded():
    assert {"3.5.1", "3.5.33", versions.etcd_default(), "3.7.3"} <= set(RELEASES), RELEASES


@pytest.mark.parametrize("release", RELEASES)
def test_right_after_bootstrap_the_cluster_version_is_a_placeholder_and_the_check_asks_again(release):
    """What etcd answered while its first look at the members had missed the
    last one: cluster version 3.0.0, every member on `release`."""
    assert decide.cluster_version(answer(release, "undecided", "version")) == (3, 0, 0)
    assert {s.text for s in decide.statuses(answer(release, "undecided", "status"))} == {release}
    with pytest.raises(decide.NotYet, match="says 3.0 while"):
        ask(release, "undecided", release)


@pytest.mark.parametrize("release", RELEASES)
def test_at_the_deadline_a_placeholder_is_judged_by_the_members_versions(release):
    """A patch upgrade is allowed; never "go through 3.1", which is what the
    placeholder taken at its word said."""
    said = ask(release, "undecided", release, final=True)
    assert f"cluster version {release.rsplit('.', 1)[0]} (members' versions" in said
    with pytest.raises(decide.Refused) as two_up:
        ask(release, "undecided", f"3.{int(release.split('.')[1]) + 2}.0", final=True)
    assert "3.1" not in str(two_up.value) and "one minor version at a time" in str(two_up.value)


def test_a_placeholder_over_members_below_the_floor_names_the_floor():
    """3.5.1 members, cluster version 3.0.0: the default 3.6 is refused for
    the 3.5.32 floor, as the decided cluster would be."""
    for state in ("undecided", "voters"):
        with pytest.raises(decide.Refused, match=r"requires every member on\n3\.5\.32 or later first.*runs 3\.5\.1"):
            ask("3.5.1", state, versions.etcd_default(), final=True)


@pytest.mark.parametrize("release", RELEASES)
def test_a_decided_cluster_is_judged_by_its_cluster_version(release):
    m = int(release.split(".")[1])
    assert decide.cluster_version(answer(release, "voters", "version"))[:2] == (3, m)
    assert ask(release, "voters", release).endswith(f"-> {release} allowed")
    if release != "3.5.1" and m < 7:
        assert "(cluster version)" in ask(release, "voters", next_minor(release))
    with pytest.raises(decide.Refused, match="one minor version at a time"):
        ask(release, "voters", f"3.{m + 2}.0")
    if m > 5:
        with pytest.raises(decide.Refused, match="does not\nsupport going back a minor"):
            ask(release, "voters", f"3.{m - 1}.0")


@pytest.mark.parametrize("release", RELEASES)
def test_a_member_down_does_not_stop_a_decided_cluster_from_judging(release):
    assert len(decide.statuses(answer(release, "one-down", "status"))) == 2
    assert ask(release, "one-down", release).endswith("allowed")


@pytest.mark.parametrize("release", RELEASES)
def test_nothing_readable_or_members_missing_is_refused_saying_so(release):
    """Alone and forming, a member's client port answers nothing and etcdctl
    prints null; with a placeholder and one member down, which version the
    cluster will decide cannot be told either."""
    assert answer(release, "forming", "version") == "" and decide.statuses(answer(release, "forming", "status")) == []
    assert "not_decided" in answer(release, "forming", "peer-version")
    with pytest.raises(decide.NotYet):
        ask(release, "forming", release)
    with pytest.raises(decide.Refused, match=r"cannot tell which etcd version[\s\S]*0 of 3 members answered"):
        ask(release, "forming", release, final=True)
    with pytest.raises(decide.Refused, match="2 of 3 members answered"):
        ask(release, "undecided", release, final=True, status_state="one-down")


def test_what_etcd_does_not_print_is_unreadable_not_a_decision():
    for bad in ('{"etcdserver": "3.5.1"}', '{"etcdserver":"3.5.1","etcdcluster":"3.x"}', "<html>"):
        with pytest.raises(decide.Unreadable):
            decide.cluster_version(bad)
    with pytest.raises(decide.Unreadable):
        decide.statuses('[{"Endpoint": "x"}]')
    rc, out, err = decide.main(["upgrade", "--target", "3.6.14", "--members", "3", "--host", "h",
                                "--version-body", "{}"], "[]")
    assert rc == 2 and "cannot read etcd's answer" in err


def test_the_command_line_exit_statuses():
    voters, undecided = (answer("3.5.33", s, "version") for s in ("voters", "undecided"))
    status = answer("3.5.33", "voters", "status")

    def run(body, *extra, target="3.6.14"):
        res = subprocess.run([sys.executable, str(ETCD_PY), "upgrade", "--target", target, "--members", "3",
                              "--host", "etcd-01", "--floors", versions.etcd_upgrade_floors(),
                              "--version-body", body, *extra], input=status, capture_output=True, text=True)
        return res.returncode, res.stdout + res.stderr

    assert run(voters) == (0, "upgrade check: cluster version 3.5 (cluster version) -> 3.6.14 allowed\n")
    assert run(undecided)[0] == 3
    assert run(undecided, "--final")[0] == 0
    rc, said = run(voters, target="3.7.3")
    assert rc == 1 and "one minor version at a time" in said
    # a cluster version behind every member is etcd catching up after an upgrade: ask again
    assert run(voters.replace('"3.5.0"', '"3.4.0"'))[0] == 3


# --- the install step's check, as the node runs it ---------------------------

CURL = """#!/bin/bash
# stand-in curl: /version answers the files of $ANSWERS_LIST in turn (the last repeats); anything else fails
case "$*" in *"/version"*) ;; *) exit 22 ;; esac
n=$(cat "$COUNTER" 2>/dev/null || echo 0); echo $((n + 1)) > "$COUNTER"
files=($ANSWERS_LIST); i=$(( n < ${#files[@]} ? n : ${#files[@]} - 1 ))
cat "${files[$i]}"
"""


def run_install_check(tmp_path: Path, release: str, versions_seen: list[str], target: str, status_state: str,
                      wait: int = 30):
    from tests.unit.test_scripts import _run_body, _stand_ins
    _stand_ins(tmp_path, {"curl": CURL, "systemctl": "#!/bin/sh\nexit 0\n"})
    libdir = tmp_path / "lib"
    libdir.mkdir()
    (libdir / "etcd.py").write_text(ETCD_PY.read_text())
    values = {"ETCD_BINS": "etcd etcdctl etcdutl", "ETCD_VERSION": target, "PKI_DIR": str(tmp_path),
              "ETCD_ENDPOINTS": "https://a:2379,https://b:2379,https://c:2379",
              "ETCD_UPGRADE_FLOORS": versions.etcd_upgrade_floors(), "ETCD_BASE_URL": "http://nowhere",
              "ETCD_TARBALL": "etcd.tar.gz", "ETCD_SHA256": ""}
    stand_in = (f"HAKUBE_LIB_DIR={libdir}\n"
                f"etcdctl_hc() {{ cat {ANSWERS / f'v{release}' / f'{status_state}.status.json'}; }}\n")
    body = (steps.prelude(values) + steps.LIBS["common.sh"].read_text() + steps.LIBS["etcd.sh"].read_text()
            + stand_in + (steps.COMPONENTS / "etcd" / "install.sh").read_text())
    files = " ".join(str(ANSWERS / f"v{release}" / f"{s}.version.json") for s in versions_seen)
    return _run_body(body, tmp_path, ANSWERS_LIST=files, COUNTER=tmp_path / "n", POLL_SECONDS=0,
                     UPGRADE_WAIT_SECONDS=wait)


def test_the_install_step_waits_for_etcd_to_decide_then_goes_on(tmp_path):
    """Two asks see the 3.0.0 placeholder, the third the decided 3.5: the
    next minor is allowed by the cluster version, and the step goes on to
    fetch the release."""
    res = run_install_check(tmp_path, "3.5.33", ["undecided", "undecided", "voters"], versions.etcd_default(),
                            "voters")
    assert res.stdout.count("asking again") == 1, res.stdout
    assert f"cluster version 3.5 (cluster version) -> {versions.etcd_default()} allowed" in res.stdout
    assert "download failed" in res.stderr and (tmp_path / "n").read_text().strip() == "3"


def test_the_install_step_at_its_deadline_judges_by_the_members(tmp_path):
    res = run_install_check(tmp_path, "3.5.1", ["undecided"], versions.etcd_default(), "undecided", wait=0)
    assert res.returncode == 1 and "requires every member on\n3.5.32" in res.stderr, res.stderr
    assert "3.1" not in res.stderr and "download failed" not in res.stderr
    res = run_install_check(tmp_path / "2", "3.5.33", ["undecided"], versions.etcd_default(), "undecided", wait=0)
    assert "(members' versions (the cluster version says 3.0))" in res.stdout and "download failed" in res.stderr


def test_the_install_step_refuses_when_nothing_can_be_read(tmp_path):
    res = run_install_check(tmp_path, "3.6.14", ["forming"], "3.6.14", "forming", wait=0)
    assert res.returncode == 1 and "cannot tell which etcd version" in res.stderr, res.stderr
    assert "download failed" not in res.stderr


# --- the member table (etcd.sh member_table) ----------------------------------------

def members_of(release: str, state: str) -> list[list[str]]:
    return [line.split() for line in decide.members(answer(release, state, "members"))]


@pytest.mark.parametrize("release", RELEASES)
def test_the_member_table_of_a_healthy_cluster_a_member_down_and_a_learner(release):
    """Three started voters, named, in hex ids etcdctl takes back; a stopped
    member is still listed as started (it published its client URLs); a
    learner added and not yet started has no name and no client URLs."""
    for state in ("voters", "one-down"):
        rows = members_of(release, state)
        assert sorted(r[2] for r in rows) == ["etcd-01", "etcd-02", "etcd-03"], rows
        assert all(r[1] == "started" and r[4] == "false" and r[3].startswith("http://") for r in rows), rows
        assert all(int(r[0], 16) > 0 for r in rows)
    rows = members_of(release, "learner")
    (learner,) = [r for r in rows if r[4] == "true"]
    assert learner[1:3] == ["unstarted", "-"] and len(rows) == 4, rows
    ids = json.loads(answer(release, "learner", "members"))["members"]
    assert {format(m["ID"], "x") for m in ids} == {r[0] for r in rows}


@pytest.mark.parametrize("release", RELEASES)
def test_no_member_list_is_refused_and_a_foreign_answer_is_unreadable(release):
    """A lone bootstrapping member's client port answers nothing (forming):
    the table is refused (exit 1) and etcdctl's own error says why; an
    answer etcd never gives is a bug (exit 2)."""
    assert decide.main(["members"], answer(release, "forming", "members"))[0] == 1
    assert decide.main(["members"], answer(release, "voters", "status"))[0] == 2


@pytest.mark.parametrize("release", RELEASES)
def test_the_leader_and_the_running_version_from_endpoint_status(release):
    """membership.sh hands leadership away before it removes the leader, and
    restart.sh checks what a restarted member serves. Read from the JSON
    answer: etcdctl's simple format gained columns in 3.6 (storage version,
    in use, quota before IS LEADER), and the column hakube read there for
    "is leader" became the database size, so no leader was ever found."""
    sts = json.loads(answer(release, "voters", "status"))
    (lead,) = {s["Status"]["leader"] for s in sts}
    assert decide.leader(answer(release, "voters", "status")) == format(lead, "x")
    assert decide.leader(answer(release, "forming", "status")) == ""
    one = json.dumps(sts[:1])
    assert decide.running_version(one) == release
    assert decide.main(["version"], answer(release, "voters", "status"))[0] == 1     # three endpoints, not one
