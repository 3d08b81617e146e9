"""`make review` on a dozen real changes of the dev stack: each review
matches its golden file (tests/graph/golden/, refreshed with
HAKUBE_UPDATE_GOLDEN=1 after reading the diff), and what it says runs is
exactly what the engine model then runs for the same change (tests.plan's
Planner, the model the lab executes), step for step and in dependency order.

Each change is a copy of this checkout with one edit (a stack file key, a
helper's comment); the base side runs once from an empty state."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from review import build, compare, from_preview, render
from review.__main__ import side
from tests.harness import ROOT
from tests.plan import Planner

COMMAND_TYPE = "command:remote:Command"

GOLDEN = Path(__file__).parent / "golden"
SKIP = shutil.ignore_patterns(".git", ".venv", ".lab", ".tools", "__pycache__", ".pulumi-state", ".pytest_cache", "*.key")
KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIReviewKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA review-a"
KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIReviewKeyBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB review-b"


def copy_tree(dest: Path) -> Path:
    shutil.copytree(ROOT, dest, ignore=SKIP)
    return dest


def edit_stack(root: Path, fn) -> None:
    path = root / "Pulumi.dev.yaml"
    doc = yaml.safe_load(path.read_text())
    fn(doc["config"])
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def merge(config: dict, key: str, value: dict) -> None:
    def deep(a, b):
        return {**a, **{k: deep(a.get(k, {}), v) if isinstance(v, dict) else v for k, v in b.items()}}
    config[f"hakube:{key}"] = deep(config.get(f"hakube:{key}") or {}, value)


def own_key(config: dict, public: str, previous: bool = False) -> None:
    merge(config, "ssh", {"publicKey": public})
    config["hakube:sshPrivateKey"] = {"secure": "v1:reviewtest:" + public[-8:]}
    if previous:
        config["hakube:sshPreviousPrivateKey"] = {"secure": "v1:reviewtest:previous"}


# name -> (edit of the base copy, edit of the head copy, the same change for the Planner or None)
CHANGES = {
    "rotation": (None, lambda c: merge(c, "pki", {"rotation": "2027-01"}),
                 lambda raw: raw.setdefault("pki", {}).update(rotation="2027-01")),
    "etcd-upgrade": (None, lambda c: merge(c, "etcd", {"version": "3.7.2"}),
                     lambda raw: raw.setdefault("etcd", {}).update(version="3.7.2")),
    "etcd-3-to-5": (None, lambda c: merge(c, "nodes", {"etcd": {"count": 5}}),
                    lambda raw: raw["nodes"].setdefault("etcd", {}).update(count=5)),
    "etcd-5-to-3": (lambda c: merge(c, "nodes", {"etcd": {"count": 5}}),
                    lambda c: merge(c, "nodes", {"etcd": {"count": 3}}), None),
    "disk-size": (None, lambda c: merge(c, "nodes", {"etcd": {"diskGiB": 40}}),
                  lambda raw: raw["nodes"].setdefault("etcd", {}).update(diskGiB=40)),
    "image": (None, lambda c: merge(c, "image", {"url": "https://cloud.debian.org/images/debian-13.qcow2"}),
              lambda raw: raw.__setitem__("image", {"url": "https://cloud.debian.org/images/debian-13.qcow2"})),
    "lb-1-to-2": (None, lambda c: merge(c, "nodes", {"loadBalancer": {"count": 2}}),
                  lambda raw: raw["nodes"].setdefault("loadBalancer", {}).update(count=2)),
    "kubernetes-upgrade": (None, lambda c: merge(c, "kubernetes", {"version": "1.37.2"}),
                           lambda raw: raw.setdefault("kubernetes", {}).update(version="1.37.2")),
    "encryption-key-rotation": (None, lambda c: merge(c, "kubernetes", {"encryption": {"keys": ["key2", "key1"]}}),
                                lambda raw: raw.setdefault("kubernetes", {}).setdefault("encryption", {}).update(
                                    keys=["key2", "key1"])),
    "control-plane-3-to-2": (None, lambda c: merge(c, "nodes", {"controlPlane": {"count": 2}}),
                             lambda raw: raw["nodes"].setdefault("controlPlane", {}).update(count=2)),
    "ssh-key-rotation": (lambda c: own_key(c, KEY_A), lambda c: own_key(c, KEY_B, previous=True), None),
    "bad-config": (None, lambda c: merge(c, "nodes", {"etcd": {"count": 4}}), None),
    "restore": (None, lambda c: merge(c, "etcd", {"restore": {"snapshot": "snapshot.db"}}), None),
    "helper-comment": (None, "comment", None),
}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The base checkout (the dev stack as it is), its side run once."""
    work = tmp_path_factory.mktemp("review")
    root = copy_tree(work / "base")
    report = side(root, "dev", work, "base")
    return work, root, report


HEADS: dict[str, tuple[dict, dict]] = {}


def head_for(name: str, tmp_path: Path, base) -> tuple[dict, dict]:
    """(base report, head report) of a change, run once per session: the
    golden test and the engine-model test read the same two reports."""
    if name not in HEADS:
        HEADS[name] = _head_for(name, tmp_path, base)
    return HEADS[name]


def _head_for(name: str, tmp_path: Path, base) -> tuple[dict, dict]:
    work, base_root, base_report = base
    edit_base, edit_head, _ = CHANGES[name]
    if edit_base is not None:           # a base of its own
        base_root = copy_tree(tmp_path / "base")
        edit_stack(base_root, edit_base)
        base_report = side(base_root, "dev", tmp_path, "base")
        state = tmp_path / "base.state"
    else:
        state = work / "base.state"
    head = copy_tree(tmp_path / "head")
    if edit_head == "comment":
        common = head / "components" / "steps" / "common.sh"
        common.write_text(common.read_text() + "# a comment added in review\n")
    else:
        edit_stack(head, edit_head)
    if name == "restore":
        (head / "snapshot.db").write_bytes(b"\0" * 4096)
    report = side(head, "dev", tmp_path, "head", state_in=state, previous_public=base_report.get("publicKey"))
    return base_report, report


@pytest.mark.parametrize("name", list(CHANGES))
def test_a_review_matches_its_golden_file(name, tmp_path, base):
    base_report, head = head_for(name, tmp_path, base)
    review = build(base_report, head)
    review.base, review.head = "main", "working tree"
    text = render(review, "markdown")
    golden = GOLDEN / f"review-{name}.md"
    if os.environ.get("HAKUBE_UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), f"review of {name} differs from {golden} (HAKUBE_UPDATE_GOLDEN=1 to refresh)"
    data = json.loads(render(review, "json"))
    assert data["summary"] == review.summary and isinstance(data["items"], list)


@pytest.mark.parametrize("name", [n for n, (_, _, planner) in CHANGES.items() if planner is not None])
def test_what_the_review_says_runs_is_what_the_engine_model_runs(name, tmp_path, base):
    """The review of a change and a `pulumi up` of the same change under the
    engine model (which the lab executes on real hosts) agree: the same
    steps run, create or update or delete alike."""
    base_report, head = head_for(name, tmp_path, base)
    review = build(base_report, head)
    said = sorted((i.name, i.action) for i in review.items if i.kind == "step" and i.action)
    p = Planner("dev")
    p.up()
    run = p.up(CHANGES[name][2])
    did = sorted([(s.name, s.action) for s in run.ran()] +
                 [(r.name, "delete") for r in run.deleted if r.type.endswith("Command") and r.inputs.get("delete")])
    assert said == did


def test_a_bad_value_is_reviewed_as_the_programs_refusal_with_its_key(tmp_path, base):
    base_report, head = head_for("bad-config", tmp_path, base)
    review = build(base_report, head)
    assert "hakube:nodes.etcd.count" in review.refusal and review.items == []
    assert "refuses" in review.summary


def test_make_review_end_to_end_prints_a_json_review(tmp_path, capsys):
    """The command itself (two checkouts, two program runs in processes of
    their own); it prints how long it took, the target is under 5 s."""
    from review.__main__ import main
    a, b = copy_tree(tmp_path / "a"), copy_tree(tmp_path / "b")
    edit_stack(b, CHANGES["etcd-upgrade"][1])
    assert main(["--base-dir", str(a), "--head-dir", str(b), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert any("etcd restarts, one at a time, in this order: etcd-01, etcd-02, etcd-03" in d
               for d in data["dangers"]), data["dangers"]


# -- the real engine's plan: `pulumi preview --json` ------------------------------

def preview_of(report: dict, disagree: str | None = None) -> dict:
    """`pulumi preview --json` for the steps of a review.side report, shaped as
    Pulumi documents it (pkg/display/json.go: steps of op, urn, oldState,
    newState, diffReasons, replaceReasons, detailedDiff; a replace as
    create-replacement, replace, delete-replaced), secrets as [secret]."""
    steps = []
    for s in report["steps"]:
        # a connection holds the SSH key: the engine shows the whole input as a secret
        conn = {"connection": "[secret]"} if s.get("host") else {}
        state = {"urn": s["urn"], "custom": True, "type": s["type"], "inputs": {**conn, **{
            k: ("[secret]" if k in s["secret"] else v) for k, v in s["new"].items()}}}
        old = {"urn": s["urn"], "custom": True, "type": s["type"], "inputs": {
            k: ("[secret]" if k in s["secret"] else v) for k, v in s["old"].items()}}
        op = s["op"]
        if s["name"] == disagree:
            op = "update" if op == "same" else "same"
        diff = {k: {"kind": "update-replace" if k in s["replace_keys"] else "update", "inputDiff": True}
                for k in s["changed"]}
        common = {"urn": s["urn"], "provider": "", "diffReasons": s["changed"], "replaceReasons": s["replace_keys"],
                  "detailedDiff": diff}
        if op == "replace":
            steps += [{"op": "create-replacement", **common, "newState": state},
                      {"op": "replace", **common, "oldState": old, "newState": state},
                      {"op": "delete-replaced", **common, "oldState": old}]
        elif op == "create":
            steps.append({"op": op, **common, "newState": state})
        else:
            steps.append({"op": op, **common, "oldState": old, "newState": state})
    for d in report["deleted"]:
        steps.append({"op": "delete", "urn": d["urn"], "provider": "", "oldState": {
            "urn": d["urn"], "custom": True, "type": d["type"], "retainOnDelete": d["retained"],
            "inputs": {"delete": d["delete"]} if d["delete"] else {}}})
    return {"steps": steps, "changeSummary": {}, "duration": 1}


def test_a_review_from_pulumi_preview_json_says_what_the_models_says(tmp_path, base):
    base_report, head = head_for("etcd-3-to-5", tmp_path, base)
    model = build(base_report, head)
    preview = preview_of(head)
    assert compare(head, preview) == []
    real = from_preview(preview, head["outputs"]["nodeIps"], "dev")
    assert sorted((i.name, i.op, i.action) for i in real.items) == sorted(
        (i.name, i.op, i.action) for i in model.items)
    assert real.summary == model.summary


def test_a_disagreement_between_the_model_and_pulumi_preview_is_printed(tmp_path, base):
    base_report, head = head_for("etcd-3-to-5", tmp_path, base)
    preview = preview_of(head, disagree="hakube-etcd-etcd-01-restart")
    lines = compare(head, preview)
    assert lines == ["hakube-etcd-etcd-01-restart: the model plans same, pulumi preview update"]
    real = from_preview(preview, head["outputs"]["nodeIps"], "dev")
    real.disagreements = lines
    assert "disagree" in render(real) and "etcd-01-restart" in render(real)


def test_a_script_the_preview_cannot_know_yet_is_not_read_as_removed():
    """`pulumi preview --json` prints an output the same run makes (a new
    certificate's digest in a restart step's text) as the unknown value: the
    review says the text is known only once the steps before it ran, not
    that the script's lines go away."""
    unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    old = {"create": "#!/bin/bash\nRESTART_PAYLOAD='abc'\n# hakube-step: etcd/restart.sh\nsystemctl restart etcd\n",
           "connection": {"host": "192.168.144.201"}}
    step = {"op": "update", "urn": "urn:pulumi:dev::hakube::hakube:cluster:Cluster$command:remote:Command::"
                                   "hakube-etcd-etcd-01-restart",
            "diffReasons": ["create"], "detailedDiff": {"create": {"kind": "update"}},
            "oldState": {"type": COMMAND_TYPE, "custom": True, "inputs": old},
            "newState": {"type": COMMAND_TYPE, "custom": True, "inputs": {**old, "create": unknown}}}
    review = from_preview({"steps": [step]}, {"etcd-01": "192.168.144.201"}, "dev")
    (item,) = review.items
    assert (item.name, item.op, item.action) == ("hakube-etcd-etcd-01-restart", "update", "create")
    assert item.why == ["create known only once the steps it depends on have run"], item.why
    assert unknown not in render(review)


def test_a_step_whose_secret_connection_changed_says_so():
    """An SSH key rotation under the real engine: each step's `connection`
    (it holds the key) is "[secret]" on both sides of `pulumi preview
    --json`. The review names the step and the change, without the key."""
    old = {"create": "#!/bin/bash\n# hakube-step: node/ready.sh\ntrue\n", "connection": "[secret]"}
    step = {"op": "update", "urn": "urn:pulumi:dev::hakube::hakube:cluster:Cluster$hakube:node:Node$"
                                   "command:remote:Command::hakube-etcd-02-ready",
            "diffReasons": ["connection"], "detailedDiff": {"connection": {"kind": "update"}},
            "oldState": {"type": COMMAND_TYPE, "custom": True, "inputs": old},
            "newState": {"type": COMMAND_TYPE, "custom": True, "inputs": dict(old)}}
    review = from_preview({"steps": [step]}, {"etcd-02": "192.168.144.202"}, "dev")
    (item,) = review.items
    assert (item.name, item.node, item.op, item.action) == ("hakube-etcd-02-ready", "etcd-02", "update", "create")
    assert any("its connection changed (secret" in w for w in item.why), item.why


def _vm(op: str, node: str, role: str = "etcd") -> dict:
    """A VM's step of `pulumi preview --json` as the real CLI prints it: a
    create has only newState, a delete only oldState, each with the VM's
    description among its inputs."""
    state = {"type": "libvirt:index/domain:Domain", "custom": True,
             "inputs": {"name": f"dev-{node}", "description": f"hakube dev {role} {node}"}}
    urn = f"urn:pulumi:dev::hakube::hakube:cluster:Cluster$hakube:node:Node$libvirt:index/domain:Domain::hakube-{node}-domain"
    return {"op": op, "urn": urn, "provider": "", **({"newState": state} if op == "create" else {"oldState": state})}


ETCD_IPS = {"etcd-01": "192.168.144.201", "etcd-02": "192.168.144.202", "etcd-03": "192.168.144.203"}


def test_a_preview_with_nothing_to_do_warns_of_nothing():
    """The real CLI's preview of an unchanged stack lists only the stack
    itself (`same`), no member's VM: no quorum danger (it once said "0 of 0
    etcd members' VMs ... survives -1")."""
    same = {"steps": [{"op": "same", "urn": "urn:pulumi:dev::hakube::pulumi:pulumi:Stack::hakube-dev"}]}
    for nodes in (ETCD_IPS, {}):        # {}: no member known, nothing to judge quorum by
        review = from_preview(same, nodes, "dev")
        assert (review.items, review.dangers) == ([], []), nodes


def test_a_preview_that_deletes_more_members_than_quorum_allows_says_so():
    """Members counted from the stack (after) and the VMs the run deletes
    (before): 2 of 3 deleted at once is more than the 1 a cluster of 3
    survives; 2 of 5 is not."""
    review = from_preview({"steps": [_vm("delete", "etcd-02"), _vm("delete", "etcd-03")]},
                          {"etcd-01": ETCD_IPS["etcd-01"]}, "dev")
    assert review.dangers[0] == ("2 of 3 etcd members' VMs are deleted or replaced in one run (etcd-02, etcd-03); "
                                 "the cluster survives 1 at once"), review.dangers
    assert [i.node for i in review.items] == ["etcd-02", "etcd-03"]
    five = from_preview({"steps": [_vm("delete", "etcd-04"), _vm("delete", "etcd-05")]}, ETCD_IPS, "dev")
    assert not any("members' VMs" in d for d in five.dangers), five.dangers
    assert [i.node for i in five.items] == ["etcd-04", "etcd-05"]


def test_a_preview_that_adds_members_counts_them_only_after():
    """3 -> 5: the new members' VMs are created; before the run there were
    3, so deleting none is no danger, and no member leaves."""
    ips = {**ETCD_IPS, "etcd-04": "192.168.144.204", "etcd-05": "192.168.144.205"}
    review = from_preview({"steps": [_vm("create", "etcd-04"), _vm("create", "etcd-05"),
                                     _vm("create", "worker-01", role="worker")]}, ips, "dev")
    assert review.dangers == [], review.dangers
