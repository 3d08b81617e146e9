"""`make review`: what a change will make `pulumi up` do, per node, readable
in a pull request.

Two sides are run (review.side), each the program of one checkout under the
engine model the lab uses (engine/): the base from an empty state, then the
working tree from the state the base left. What the second run plans is the
change. This module turns the two reports into a review: dangers first
(VMs and disks deleted or replaced, etcd members touched at once, restarts
in order, certificates re-issued, secrets changed), then per node the steps
that will run and why, in words (ETCD_VERSION 3.6.14 -> 3.7.2, /etc/hosts:
+ etcd-04), then what only the live cluster can refuse.

The same review can be made from the real engine's plan (`pulumi preview
--json`, `from_preview`), and the two compared: a disagreement is a bug in
the model.
"""
from __future__ import annotations

import difflib
import json
import re
import shlex
from dataclasses import asdict, dataclass, field
from typing import Iterable

from components.etcd import notes as etcd_notes
from components.kubernetes import notes as kubernetes_notes
from components.loadbalancer import notes as lb_notes
from components.steps.plan import MEMBERS_REMOVED, RUNS_AGAIN

COMMAND = "command:remote:Command"
LIBVIRT_KINDS = {
    "libvirt:index/volume:Volume": "volume",
    "libvirt:index/domain:Domain": "VM",
    "libvirt:index/cloudInitDisk:CloudInitDisk": "cloud-init disk",
    "libvirt:index/network:Network": "network",
}
CERTS = ("tls:index/locallySignedCert:LocallySignedCert", "tls:index/selfSignedCert:SelfSignedCert")
KEYS = ("tls:index/privateKey:PrivateKey",)
STEP_MARK = re.compile(r"^# hakube step: (\S+)$", re.M)
MACHINE_MARK = re.compile(r"^# hakube machine: (\S*)\n")
ASSIGN = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")
EMPTY = "(empty)"
# What each component says of its own scripts (steps/plan.py Note), by the
# name a step's mark gives its script ("loadbalancer/vip.sh").
NOTES = {f"{component}/{script}": note for component, notes in
         (("etcd", etcd_notes.NOTES), ("kubernetes", kubernetes_notes.NOTES), ("loadbalancer", lb_notes.NOTES))
         for script, note in notes.items()}
RESTARTS = {script: note.restarts for script, note in NOTES.items() if note.restarts}
# Steps that take something down whenever they run.
DANGER_SCRIPTS = {script: note for script, note in NOTES.items() if note.danger}
# Checks only the running cluster can make, at the start of the step that needs them.
RUNTIME_CHECKS = {script: note for script, note in NOTES.items() if note.check}


@dataclass
class Item:
    """One resource's part in the run."""
    node: str                     # a node name, or "cluster"
    name: str
    kind: str                     # step | VM | volume | cloud-init disk | certificate | key | network | ...
    op: str                       # create | update | replace | delete
    script: str = ""              # the shipped script that runs (steps)
    action: str = ""              # create | update | delete (which of the step's scripts)
    why: list[str] = field(default_factory=list)
    diff: str = ""                # the script's text diff (on request)
    unknown: bool = False         # its script is known only once the steps before it ran (pulumi preview)


@dataclass
class Review:
    stack: str
    base: str
    head: str
    summary: str = ""
    refusal: str = ""
    dangers: list[str] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    runtime_checks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)
    source: str = "model"         # model | pulumi preview

    def nodes(self) -> dict[str, list[Item]]:
        """Items per node: the cluster-wide ones first, then nodes by name."""
        out: dict[str, list[Item]] = {}
        for item in self.items:
            out.setdefault(item.node, []).append(item)
        return dict(sorted(out.items(), key=lambda kv: (kv[0] != "cluster", kv[0])))


# -- reading scripts ---------------------------------------------------------------

def unwrap_script(text: str | None) -> tuple[str, str]:
    """(machine id, the script as bash runs it) of a step's command text."""
    if not text:
        return "", ""
    machine = ""
    m = MACHINE_MARK.match(text)
    if m:
        machine, text = m.group(1), text[m.end():]
    if text.startswith("sudo -n bash -c "):
        try:
            text = shlex.split(text[len("sudo -n bash -c "):])[0]
        except ValueError:
            pass
    return machine, text


def script_name(text: str | None, name: str, node: str = "") -> str:
    """The shipped script a step runs (`loadbalancer/vip.sh`); for a shared one
    (steps/file.sh) or one without a mark, with what the step is for."""
    m = STEP_MARK.search(unwrap_script(text)[1]) if text else None
    purpose = name.split(f"-{node}-", 1)[1] if node and f"-{node}-" in name else name.rsplit("-", 1)[-1]
    if m:
        script = m.group(1)
        return script if purpose in script.rsplit("/", 1)[-1] else f"{script} ({purpose})"
    return f"node/{purpose}"


def prelude(text: str) -> tuple[dict[str, str], str]:
    """The `VAR='value'` assignments a step starts with, and the rest."""
    values: dict[str, str] = {}
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i].rstrip("\n")
        if line == "set -euo pipefail":
            i += 1
            continue
        m = ASSIGN.match(line)
        if not m:
            break
        try:
            values[m.group(1)] = " ".join(shlex.split(m.group(2))) if m.group(2) else ""
        except ValueError:
            values[m.group(1)] = m.group(2)
        i += 1
    return values, "".join(lines[i:])


def value_change(key: str, old: str | None, new: str | None) -> str:
    if old is None:
        return f"{key} = {_short(new)} (new)"
    if new is None:
        return f"{key} removed (was {_short(old)})"
    if key.endswith(("PAYLOAD", "DIGEST")):
        return f"{key} changed"
    if key.endswith("NOT_AFTER"):
        return f"{key} {old} -> {new}"
    if len(old) <= 48 and len(new) <= 48:
        return f"{key} {old or EMPTY} -> {new or EMPTY}"
    a, b = _items(old), _items(new)
    if len(a) > 1 or len(b) > 1:
        added, removed = [x for x in b if x not in a], [x for x in a if x not in b]
        parts = [f"+ {x}" for x in added[:4]] + [f"- {x}" for x in removed[:4]]
        more = len(added) + len(removed) - len(parts)
        return f"{key}: " + ", ".join(parts) + (f" (+{more} more)" if more > 0 else "") if parts \
            else f"{key} reordered"
    return f"{key} changed"


def _items(value: str) -> list[str]:
    return [x for x in re.split(r"[,;{}\s]+", value) if x]


def _short(value: str | None, n: int = 48) -> str:
    value = value or ""
    return value if len(value) <= n else value[: n - 3] + "..."


def _common(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def text_change(label: str, old: str | None, new: str | None, limit: int = 4) -> str:
    """A file's change in a line: the lines added and removed."""
    if old is None:
        return f"{label}: new ({len((new or '').splitlines())} lines)"
    a, b = (old or "").splitlines(), (new or "").splitlines()
    plus = [line.strip() for line in b if line not in a and line.strip()]
    minus = [line.strip() for line in a if line not in b and line.strip()]
    shown = []
    # a line changed in place (same start, e.g. `set etcd_peers {... elements
    # = { ... }`, `initial-cluster: ...`): the items added and removed
    for p in list(plus):
        twin = next((m for m in minus if _common(p, m) >= 12), None)
        if twin is not None:
            plus.remove(p)
            minus.remove(twin)
            key = re.match(r"[^=:{]*", p).group(0).strip() or _short(p, 24)
            shown.append(value_change(key, twin, p))
    shown += [f"+ {_short(x, 70)}" for x in plus[:limit]] + [f"- {_short(x, 70)}" for x in minus[:limit]]
    more = len(plus) + len(minus) - len(shown)
    return f"{label}: " + "; ".join(shown) + (f" (+{more} more lines)" if more > 0 else "") if shown \
        else f"{label}: reordered"


# -- the model's plan -----------------------------------------------------------------

def build(base: dict, head: dict, *, scripts: bool = False) -> Review:
    """The review of a change: `base` and `head` are review.side reports."""
    review = Review(stack=head.get("stack", ""), base=base.get("root", ""), head=head.get("root", ""))
    if head.get("error"):
        review.refusal = head["error"]
        review.summary = "the program refuses this change: nothing would run"
        return review
    if base.get("error"):
        review.notes.append("the base does not run (" + base["error"].splitlines()[0] + "): planned from an "
                            "empty stack")
    nodes = _node_names(base, head)
    # The engine starts a step once all it depends on is done, in whatever
    # order registrations arrive: the review lists steps by their depth in
    # the dependency graph (a step after everything it waits for), then name.
    depth = _depths(head.get("steps", []))
    for step in sorted(head.get("steps", []), key=lambda st: (depth.get(st["urn"], 0), st["name"])):
        if step["op"] == "same":
            continue
        item = _item(step, nodes, scripts)
        if item is not None:
            review.items.append(item)
    replaced = {st["urn"] for st in head.get("steps", []) if st["op"] == "replace"}
    for res in sorted(head.get("deleted", []), key=lambda r: r["name"]):
        if res["urn"] in replaced and not res.get("delete"):
            continue                # the old copy of a replacement (create-before-delete): said above
        if res["type"].startswith("hakube:"):
            continue                # a component: its children are listed
        review.items.append(_deleted(res, nodes))
    _secrets(review, base, head)
    _finish(review, base, head)
    return review


def _depths(steps: list[dict]) -> dict[str, int]:
    deps = {st["urn"]: st.get("dependencies", []) for st in steps}
    depth: dict[str, int] = {}

    def of(urn: str, seen: tuple = ()) -> int:
        if urn in depth:
            return depth[urn]
        if urn in seen or urn not in deps:
            return 0
        depth[urn] = 1 + max((of(d, seen + (urn,)) for d in deps[urn]), default=-1)
        return depth[urn]
    for urn in deps:
        of(urn)
    return depth


def _node_names(*reports: dict) -> dict[str, str]:
    """Address -> node name, of every node either side has."""
    ips: dict[str, str] = {}
    for r in reports:
        ips.update({ip: name for name, ip in ((r.get("outputs") or {}).get("nodeIps") or {}).items()})
    return ips


def node_of(name: str, nodes: dict[str, str], host: str | None = None) -> str:
    """The node a resource belongs to (`nodes`: address -> name): a step's by
    the address it connects to, anything else by the node name in its own name."""
    if host in nodes:
        return nodes[host]
    for node in sorted(nodes.values(), key=lambda n: (-len(n), n)):
        if f"-{node}-" in name + "-":
            return node
    return "cluster"


def _kind(type_: str, name: str) -> str:
    if type_ == COMMAND:
        return "step"
    if type_ in LIBVIRT_KINDS:
        if type_.endswith("Volume") and "image-volume" in name:
            return "image volume"
        return LIBVIRT_KINDS[type_]
    if type_ in CERTS:
        return "certificate"
    if type_ in KEYS:
        return "key"
    if type_ == "command:remote:CopyToRemote":
        return "file copy"
    return type_.split(":")[-1]


def _item(step: dict, nodes: dict[str, str], scripts: bool) -> Item | None:
    if step["type"].startswith("hakube:"):
        return None                 # a component: its children say what happens
    kind = _kind(step["type"], step["name"])
    node = node_of(step["name"], nodes, step.get("host"))
    if node == "cluster" and step.get("script"):
        # `pulumi preview` shows a connection as [secret]: the machine id
        # the script's first line carries names the node
        node = node_of(unwrap_script(step["script"])[0], nodes)
    item = Item(node=node, name=step["name"], kind=kind, op=step["op"])
    if step["type"] == COMMAND:
        if not step["runs"]:
            return None             # a step whose script is `true`: nothing runs on the node
        item.action = step["action"] or ""
        item.script = script_name(step["script"], step["name"], node)
        item.why = _command_why(step)
        item.unknown = item.action in (step.get("unknown") or [])
        if scripts and step.get("old_script") and step.get("script"):
            item.diff = "".join(difflib.unified_diff(
                unwrap_script(step["old_script"])[1].splitlines(keepends=True),
                unwrap_script(step["script"])[1].splitlines(keepends=True), "before", "after", n=1))
        return item
    if step["op"] == "create":
        item.why = ["new"]
    elif step["op"] == "replace":
        item.why = [_replace_reason(step)]
    else:
        item.why = ["changed: " + ", ".join(step["changed"])] if step["changed"] else ["changed"]
    return item


def _replace_reason(step: dict) -> str:
    if step.get("reason") == "pulumi up --replace":
        why = "replaced on request (--replace)"
    elif step["replace_keys"]:
        why = "replaced: " + ", ".join(step["replace_keys"]) + " changed"
    else:
        why = "replaced"
    if step.get("dbr"):
        why += ", delete-before-replace"
        if step.get("delete_first"):
            why += " (deleted first: " + ", ".join(step["delete_first"]) + ")"
    return why


def _command_why(step: dict) -> list[str]:
    if step["op"] == "create":
        return ["new step"]
    why: list[str] = []
    if step["op"] == "replace":
        if step.get("reason") == "pulumi up --replace":
            why.append("run again on request (--replace)")
        elif "triggers" in step["replace_keys"]:
            why.append("a new machine (its trigger changed)")
    old_m, old_text = unwrap_script(step.get("old_script"))
    new_m, new_text = unwrap_script(step.get("script"))
    unknown = step.get("unknown") or []
    if unknown:
        why.append(f"{', '.join(unknown)} known only once the steps it depends on have run")
    if step["action"] in step.get("secret", []) and step["action"] not in unknown:
        why.append("its script changed (secret)")
    elif step["action"] not in unknown and (step["action"] in step["changed"] or step["op"] == "replace"):
        if old_m != new_m:
            why.append("a new machine (the id on its disk)")
        old_vals, old_body = prelude(old_text)
        new_vals, new_body = prelude(new_text)
        for key in sorted(set(old_vals) | set(new_vals)):
            if old_vals.get(key) != new_vals.get(key):
                why.append(value_change(key, old_vals.get(key), new_vals.get(key)))
        if old_body != new_body:
            why.append("script edited")
    if "stdin" in step["changed"] and "stdin" not in unknown:
        if "stdin" in step.get("secret", []):
            why.append("its secret input changed")
        else:
            why.append(text_change(_stdin_label(step), step["old"].get("stdin"), step["new"].get("stdin")))
    if "connection" in step["changed"]:
        o, n = step["old"].get("connection") or {}, step["new"].get("connection") or {}
        if not isinstance(o, dict) or not isinstance(n, dict):
            # `pulumi preview --json` shows a connection that holds a key as "[secret]"
            why.append("its connection changed (secret: a key, the host key or the address)")
            o = n = {}
        if o.get("privateKey") != n.get("privateKey"):
            why.append("connects with another SSH key")
        if o.get("hostKey") != n.get("hostKey"):
            why.append("pins another host key")
        if o.get("host") != n.get("host"):
            why.append(f"another address: {n.get('host')}")
    if "delete" in step["changed"]:
        why.append("its delete script changed")
    return why or ["changed: " + ", ".join(step["changed"])]


def _stdin_label(step: dict) -> str:
    new = step["new"].get("stdin") or ""
    for label, mark in (("hakube's helpers", "#=== hakube-lib "), ("haproxy.cfg", "frontend kube-apiserver"), ("/etc/hosts", "localhost"),
                        ("keepalived.conf", "vrrp_instance"), ("etcd.conf.yml", "initial-cluster:"),
                        ("nftables ruleset", "table inet"), ("hakube-cluster.env", "ETCD_ENDPOINTS="),
                        ("kubeadm config", "kubeadm.k8s.io/")):
        if mark in new:
            return label
    return "its input"


def _deleted(res: dict, nodes: dict[str, str]) -> Item:
    item = Item(node=node_of(res["name"], nodes, res.get("host")), name=res["name"], kind=_kind(res["type"], res["name"]),
                op="delete")
    if res.get("retained"):
        item.why = ["leaves Pulumi's state, kept on the host (retainOnDelete)"]
    elif res.get("delete"):
        item.action, item.script = "delete", script_name(res["delete"], res["name"], item.node)
        item.why = ["no longer in the stack: its delete script runs"]
    else:
        item.why = ["no longer in the stack"]
    return item


def _secrets(review: Review, base: dict, head: dict) -> None:
    old, new = base.get("secure") or {}, head.get("secure") or {}
    for key in sorted(set(old) | set(new)):
        if key not in old:
            review.dangers.append(f"secret hakube:{key} is set (new)")
        elif key not in new:
            review.dangers.append(f"secret hakube:{key} is removed")
        elif old[key] != new[key]:
            review.dangers.append(f"secret hakube:{key} is re-encrypted or changed (its ciphertext differs)")
    if base.get("publicKey") != head.get("publicKey") and head.get("publicKey"):
        review.dangers.append("the admin SSH key changes (ssh.publicKey): every step connects with the new key")


def _file(item: "Item") -> str:
    """The shipped script of an item, without what the step is for."""
    return (item.script or "").split(" (", 1)[0]


def _members(report: dict) -> list[str]:
    """The etcd members a side of the review has (its nodeIps output)."""
    return [n for n in ((report.get("outputs") or {}).get("nodeIps") or {}) if n.startswith("etcd-")]


def _restarts(item: Item) -> bool:
    """Whether a restart step's run restarts its service: its payload's
    digest changed, or is known only once the steps before it have run
    (`pulumi preview`: what feeds the digest, a certificate, is new)."""
    return item.unknown or any(w.startswith("RESTART_PAYLOAD") for w in item.why)


def _finish(review: Review, base: dict, head: dict) -> None:
    items = review.items
    members = _members(base)
    # dangers: VMs, volumes and disks deleted or replaced
    vm_kinds = ("VM", "volume", "cloud-init disk", "network", "image volume")
    for item in items:
        if item.kind in vm_kinds and item.op in ("replace", "delete") and not (
                item.op == "delete" and item.why and "retainOnDelete" in item.why[0]):
            review.dangers.append(f"{item.node}: {item.kind} {item.name} {item.op.upper()}D"
                                  + (f" ({item.why[0]})" if item.why else ""))
            if item.kind == "image volume" and item.op == "delete":
                review.dangers.append("  every node's disk is an overlay on that image volume: keep it with "
                                      "`pulumi state delete <its URN>` before this run (README: image volumes)")
        if item.kind == "step" and item.op == "delete" and item.action == "delete":
            review.dangers.append(f"{item.node}: {item.name} leaves the stack and runs {item.script}")
    touched = sorted({i.node for i in items if i.node in members and i.kind in ("VM", "volume")
                      and i.op in ("replace", "delete")})
    limit = (len(members) - 1) // 2
    # with no member known there is no quorum to judge (a state with no etcd VM yet)
    if members and len(touched) > limit:
        review.dangers.insert(0, f"{len(touched)} of {len(members)} etcd members' VMs are deleted or "
                                 f"replaced in one run ({', '.join(touched)}); the cluster survives {limit} at once")
    # restarts, in the order the run makes them
    for script, what in RESTARTS.items():
        order = [i.node for i in items if _file(i) == script and _restarts(i)]
        if order:
            review.dangers.append(f"{what} restarts, one at a time, in this order: {', '.join(order)}")
    keys = [i for i in items if _file(i) == "kubernetes/encryption.sh" and any(w.startswith("KEYS") for w in i.why)
            and i.name.endswith(("-encryption-add", "-encryption-use"))]
    if keys:
        review.dangers.append("the encryption keys change: kube-apiserver restarts, one at a time, in this order: "
                              + ", ".join(f"{i.node} ({i.name.rsplit('-', 1)[1]})" for i in keys)
                              + "; then every Secret is written again")
    for script, note in DANGER_SCRIPTS.items():
        on = list(dict.fromkeys(i.node for i in items if _file(i) == script
                                and not (note.danger_when == RUNS_AGAIN and i.op == "create")))
        if on and not (note.danger_when == MEMBERS_REMOVED and not _removes_members(base, head)):
            review.dangers.append(note.danger.format(nodes=", ".join(on)))
    reissued = [i for i in items if i.kind in ("certificate", "key") and i.op in ("replace", "update")]
    if reissued:
        review.dangers.append("re-issued: " + ", ".join(sorted(_cert_name(i.name) for i in reissued)))
    # what only the live cluster can refuse
    seen = {}
    for item in items:
        note = RUNTIME_CHECKS.get(_file(item))
        if note and (item.script == _file(item) or not note.check_own_only):
            seen.setdefault(_file(item), []).append(item.node)
    review.runtime_checks = [f"{RUNTIME_CHECKS[s].check} ({s} on {', '.join(dict.fromkeys(n))})"
                             for s, n in seen.items()]
    pending = (head.get("outputs") or {}).get("pendingRebuilds") or []
    if pending:
        review.notes.append("nodes whose VM differs from the stack until rebuilt (make rebuild NODE=...): "
                            + "; ".join(pending))
    runs = [i for i in items if i.kind == "step" and i.action]
    nodes = {i.node for i in runs} - {"cluster"}
    vms = len([i for i in items if i.kind == "VM" and i.op == "replace"])
    deletes = len([i for i in items if i.op == "delete"])
    review.summary = (f"{len(runs)} step{'s' if len(runs) != 1 else ''} run on {len(nodes)} "
                      f"node{'s' if len(nodes) != 1 else ''}, {vms} VM{'s' if vms != 1 else ''} replaced, "
                      f"{deletes} delete{'s' if deletes != 1 else ''}")
    if not items:
        review.summary = "no changes: nothing runs"


def _removes_members(base: dict, head: dict) -> bool:
    return bool(set(_members(base)) - set(_members(head)))


def _vm_changes(preview: dict) -> list[tuple[str, str, str]]:
    """(op, role, node) of each VM a previewed run creates or deletes, by
    the VM's description (`hakube <stack> <role> <node>`)."""
    found = []
    for step in preview.get("steps") or []:
        op = step.get("op")
        state = step.get("newState") if op == "create" else step.get("oldState") if op == "delete" else None
        if not state or state.get("type") != "libvirt:index/domain:Domain":
            continue
        words = str((state.get("inputs") or {}).get("description") or "").split()
        if len(words) == 4 and words[0] == "hakube":
            found.append((op, words[2], words[3]))
    return found


def _vm_sides(preview: dict, nodes: dict[str, str]) -> tuple[dict, dict]:
    """The etcd members before and after a previewed run, as the review
    needs them. `pulumi preview --json` lists no unchanged resource (only
    the stack's own `same`; measured on the CLI `make tools` builds), so the
    members after are the stack's (`nodes`: address -> name), and the ones
    before are those, less the VMs the run creates, plus the ones it deletes."""
    after = {n for n in nodes.values() if n.startswith("etcd-")}
    before = set(after)
    for op, role, node in _vm_changes(preview):
        if role == "etcd":
            (before.discard if op == "create" else before.add)(node)
    return ({"outputs": {"nodeIps": dict.fromkeys(sorted(before), "")}},
            {"outputs": {"nodeIps": dict.fromkeys(sorted(after), "")}})


def _collapse(items: list[Item], at_least: int = 4) -> list[Item]:
    """Steps of a node that change for one and the same reason (a new SSH
    key, a new machine) as one line, when there are many of them."""
    groups: dict[tuple, list[Item]] = {}
    for item in items:
        if item.kind == "step" and item.op == "update" and item.why:
            groups.setdefault(tuple(item.why), []).append(item)
    deletes = [i for i in items if i.op == "delete"]
    gone = [i for i in deletes if not i.action]
    if len(gone) >= at_least and len(deletes) == len(items):
        # a node that leaves: what goes, in one line; what runs on its way out, each on its own
        things = [i.kind for i in gone]
        counted = ", ".join(f"{k} x{things.count(k)}" if things.count(k) > 1 else k for k in dict.fromkeys(things))
        return [Item(node=items[0].node, name="gone", kind="new", op="delete", why=[f"leaves the stack: {counted}"]),
                *[i for i in deletes if i.action]]
    creates = [i for i in items if i.op == "create"]
    if len(creates) >= at_least and len(creates) == len(items):
        # a new node: one line for its machine, one for its steps
        things = [i.kind for i in creates if i.kind != "step"]
        counted = ", ".join(f"{k} x{things.count(k)}" if things.count(k) > 1 else k for k in dict.fromkeys(things))
        steps = [i.script for i in creates if i.kind == "step"]
        out = [Item(node=items[0].node, name="new", kind="new", op="create", script=counted,
                    why=[f"new node: {counted}"])] if things else []
        if steps:
            out.append(Item(node=items[0].node, name=f"{len(steps)} steps", kind="steps", op="create",
                            action="create", script=", ".join(steps), why=["new steps, in this order"]))
        return out
    out, done = [], set()
    for item in items:
        group = groups.get(tuple(item.why)) if item.kind == "step" and item.op == "update" else None
        if group and len(group) >= at_least:
            if id(group) not in done:
                done.add(id(group))
                scripts = ", ".join(dict.fromkeys(i.script for i in group))
                out.append(Item(node=item.node, name=f"{len(group)} steps", kind="steps", op="update",
                                action="create/update", script=scripts, why=list(item.why)))
            continue
        out.append(item)
    return out


def _cert_name(name: str) -> str:
    return name.removeprefix("hakube-pki-").removeprefix("hakube-")


# -- the real engine's plan: `pulumi preview --json` ---------------------------------

# what `pulumi preview --json` prints for a value it cannot know yet (an
# output of a resource the same run creates or changes)
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
PREVIEW_OPS = {"create-replacement": "replace", "delete-replaced": "replace", "replace": "replace",
               "discard-replaced": "replace", "create": "create", "update": "update", "delete": "delete",
               "same": "same", "read": "same", "refresh": "same", "import": "create"}


def preview_ops(preview: dict) -> dict[str, str]:
    """URN -> same | create | update | replace | delete, from `pulumi preview
    --json` (its `steps`: op, urn, oldState, newState, detailedDiff)."""
    ops: dict[str, str] = {}
    for step in preview.get("steps") or []:
        op = PREVIEW_OPS.get(step.get("op", ""), step.get("op", ""))
        urn = step.get("urn", "")
        if ops.get(urn) != "replace":
            ops[urn] = op
    return ops


def from_preview(preview: dict, nodes: dict | Iterable[str] = (), stack: str = "") -> Review:
    """A review made from the real engine's plan: each step's operation and
    inputs as `pulumi preview --json` gives them (secrets stay `[secret]`)."""
    # nodeIps (name -> address), as the stack outputs it
    nodes = {ip: name for name, ip in dict(nodes).items()} if isinstance(nodes, dict) else {n: n for n in nodes}
    sides = _vm_sides(preview, nodes)
    # a node the run deletes is no longer in the stack's nodeIps: known by its VM
    nodes.update({f"vm {node}": node for op, _, node in _vm_changes(preview) if node not in nodes.values()})
    review = Review(stack=stack, base="state", head="pulumi preview", source="pulumi preview")
    steps = []
    for step in preview.get("steps") or []:
        op = PREVIEW_OPS.get(step.get("op", ""), step.get("op", ""))
        if op == "same" or step.get("op") in ("delete-replaced", "discard-replaced"):
            continue
        old = (step.get("oldState") or {})
        new = (step.get("newState") or {})
        state = new or old
        type_, name = state.get("type", ""), step.get("urn", "").rsplit("::", 1)[-1]
        diff = step.get("detailedDiff") or {}
        changed = sorted({k.split(".")[0].split("[")[0] for k in diff} | set(step.get("diffReasons") or []))
        oi, ni = old.get("inputs") or {}, new.get("inputs") or {}
        conn = ni.get("connection") if isinstance(ni.get("connection"), dict) else oi.get("connection")
        host = conn.get("host") if isinstance(conn, dict) else None
        if op == "delete":
            if type_.startswith("hakube:"):
                continue                # a component: its children are listed
            steps.append(("delete", {"name": name, "type": type_, "urn": step.get("urn"), "host": host,
                                     "delete": oi.get("delete") if type_ == COMMAND else None,
                                     "retained": bool(old.get("retainOnDelete"))}))
            continue
        action = None
        if type_ == COMMAND:
            action = "create" if op in ("create", "replace") or not ni.get("update") else "update"
        script = ni.get(action) if action else None
        # a text made from outputs of steps that run first: the preview
        # cannot know it (unknown), only that it runs
        unknown = script == UNKNOWN
        if unknown:
            script = oi.get(action) or oi.get("create") or ""
        runs = unknown or (bool(script) and str(script).strip() not in ("true", ":"))
        steps.append(("step", {
            "name": name, "type": type_, "urn": step.get("urn"), "op": op, "changed": changed, "host": host,
            "replace_keys": sorted(step.get("replaceReasons") or []), "dbr": False, "delete_first": [],
            "reason": "", "action": action, "runs": runs, "script": script,
            "secret": [k for k, v in ni.items() if v == "[secret]"],
            "old": {k: oi.get(k) for k in changed if k in oi}, "new": {k: ni.get(k) for k in changed if k in ni},
            "old_script": (oi.get(action) or oi.get("create")) if action and oi else None,
            "unknown": sorted(k for k in changed if ni.get(k) == UNKNOWN)}))
    for kind, s in steps:
        item = _deleted(s, nodes) if kind == "delete" else _item(s, nodes, False)
        if item is not None:
            review.items.append(item)
    _finish(review, *sides)
    return review


def compare(model: dict, preview: dict) -> list[str]:
    """Where the model's plan (a review.side report) and the real engine's
    differ, URN by URN: each line is a bug in the model."""
    mine = {s["urn"]: s["op"] for s in model.get("steps", [])}
    # a replaced resource's old copy is deleted too (create-before-delete):
    # that is the replace, not a delete of the resource
    mine.update({d["urn"]: "delete" for d in model.get("deleted", []) if d["urn"] not in mine})
    theirs = {urn: op for urn, op in preview_ops(preview).items() if urn.split("::")[2] != "pulumi:pulumi:Stack"}
    out = []
    for urn in sorted(set(mine) | set(theirs)):
        a, b = mine.get(urn, "absent"), theirs.get(urn, "same" if urn in mine else "absent")
        if a != b and not (a == "same" and b == "absent"):
            out.append(f"{urn.rsplit('::', 1)[-1]}: the model plans {a}, pulumi preview {b}")
    return out


# -- rendering ------------------------------------------------------------------------

def render(review: Review, fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps(asdict(review), indent=2)
    md = fmt == "markdown"
    h = (lambda t: f"### {t}") if md else (lambda t: f"== {t}")
    out = [f"## hakube review: stack {review.stack}" if md else f"hakube review: stack {review.stack}",
           ("**" + review.summary + "**") if md else review.summary]
    if review.source != "model":
        out.append(f"(from {review.source})")
    if review.refusal:
        out += ["", h("Refused by the program"), _block(review.refusal, md)]
    if review.disagreements:
        out += ["", h("The model and pulumi preview disagree (a bug in hakube's engine model)")]
        out += [f"- {d}" for d in review.disagreements]
    if review.dangers:
        out += ["", h("Dangers")] + [f"- {d}" for d in review.dangers]
    for node, items in review.nodes().items():
        out += ["", h(node)]
        for item in _collapse(items):
            if item.kind == "new":
                out.append(f"- {item.why[0]}")
                continue
            what = (item.script or item.name) if item.kind == "step" else (
                f"{item.name}: {item.script}" if item.kind == "steps" else f"{item.kind} {item.name}")
            how = f"{item.op}" + (f", runs its {item.action}" if item.action and item.action != item.op else "")
            line = f"- {'`' + what + '`' if md else what} ({how})"
            if item.why:
                line += ": " + "; ".join(item.why)
            out.append(line)
            if item.diff:
                out.append(_block(item.diff, md, "diff"))
    if review.runtime_checks:
        out += ["", h("Checked at run time (only the live cluster can refuse these)")]
        out += [f"- {c}" for c in review.runtime_checks]
    if review.notes:
        out += ["", h("Notes")] + [f"- {n}" for n in review.notes]
    return "\n".join(out) + "\n"


def _block(text: str, md: bool, lang: str = "") -> str:
    if md:
        return f"```{lang}\n{text.rstrip()}\n```"
    return "\n".join("    " + line for line in text.rstrip().splitlines())
