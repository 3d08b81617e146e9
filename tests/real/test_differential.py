"""The engine model (engine/, what `make review` plans with no state) against
the real Pulumi engine, URN by URN and operation by operation.

The real side: hakube's program run by the CLI `make tools` builds, through
the Automation API (tests/realengine/driver.py), with the stand-in provider
plugins in echo mode (tests/realengine/plugin.py: the providers' answers as
read in their source; nothing acts). The model's side: review.side, the
same program under engine/ with engine/echo.py. Both start from the dev
stack; for each change, the real `pulumi preview --json` and the model's
plan are compared with review.compare() (every line is a disagreement), and
the review made from the real preview is held to the model's, item by item.
The changes that need the state of another (5 -> 3 after 3 -> 5, a worker
removed after it was added) are applied by both first (a real `pulumi up`;
the model's state carried over). At the end, `pulumi preview
--expect-no-changes` holds, and `pulumi destroy` starts its deletes in an
order the model's delete batches allow (engine/core.py deletes()).
The figures printed are the real engine's cost per run.
"""
from __future__ import annotations

import copy
import json
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config.stackfile import raw_from_stack_file
from engine import Engine
from review import build, compare, from_preview
from tests.conftest import ROOT

PULUMI = ROOT / ".tools" / "bin" / "pulumi"
pytestmark = [pytest.mark.tools,
              pytest.mark.skipif(not PULUMI.exists(), reason="needs `make tools` (the Pulumi CLI)")]
FIGURES: dict[str, float] = {}


def deep(a: dict, b: dict) -> dict:
    return {**a, **{k: deep(a.get(k) or {}, v) if isinstance(v, dict) else v for k, v in b.items()}}


# (name, the change to the stack's config, whether both sides then apply it):
# each previewed from the state the ones applied before it left
CHAIN: list[tuple[str, dict, bool]] = [
    ("rotation", {"pki": {"rotation": "2027-01"}}, False),
    ("etcd upgrade", {"etcd": {"version": "3.7.3"}}, False),
    ("diskGiB", {"nodes": {"etcd": {"diskGiB": 40}}}, False),
    ("image", {"image": {"url": "https://cloud.debian.org/images/debian-13.qcow2"}}, False),
    ("control-plane memory", {"nodes": {"controlPlane": {"memoryMiB": 8192}}}, False),
    ("kubernetes.version", {"kubernetes": {"version": "1.37.2"}}, False),
    ("load balancers 1 -> 2", {"nodes": {"loadBalancer": {"count": 2}}}, False),
    ("etcd 3 -> 5", {"nodes": {"etcd": {"count": 5}}}, True),
    ("etcd 5 -> 3", {"nodes": {"etcd": {"count": 3}}}, True),
    ("a worker added", {"nodes": {"workers": {"count": 1}}}, True),
    ("the worker removed", {"nodes": {"workers": {"count": 0}}}, True),
]


class Real:
    """The dev stack under the real engine, in a work directory of its own."""

    def __init__(self, work: Path):
        self.work = work

    def __call__(self, config: dict, op: str) -> dict:
        cfg = self.work / "config.json"
        cfg.write_text(json.dumps(config))
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "tests.realengine.driver", str(self.work / "real"), "dev",
                               str(cfg), op], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"pulumi {op}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        out["wall"] = time.monotonic() - t0
        return out


class Model:
    """The same stack under engine/ (review.side), its state carried over."""

    def __init__(self, work: Path):
        self.work, self.state, self.n = work, None, 0

    def __call__(self, config: dict, keep: bool = True) -> dict:
        """The model's plan of `config` from the state kept so far; `keep`:
        the state it leaves is the next plan's (the change applied)."""
        self.n += 1
        cfg, report, state = (self.work / f"model-{self.n}.{x}" for x in ("config.json", "json", "state"))
        cfg.write_text(json.dumps({"raw": config}))
        argv = [sys.executable, "-m", "review.side", "--root", str(ROOT), "--stack", "dev", "--config", str(cfg),
                "--report", str(report), "--state-out", str(state)]
        if self.state:
            argv += ["--state-in", str(self.state)]
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0 and report.exists(), proc.stderr[-3000:]
        if keep:
            self.state = state
        return json.loads(report.read_text())

    def destroy(self) -> list[list[str]]:
        """`pulumi destroy` of the state kept so far: its batches of URNs."""
        engine = Engine()
        engine.state, engine.pending_deletes, _, _ = pickle.loads(self.state.read_bytes())
        return [[r.urn for r in batch] for batch in engine.destroy()]


def test_the_model_plans_what_the_real_engine_plans_through_a_chain_of_changes(tmp_path):
    real, model = Real(tmp_path), Model(tmp_path)
    config = {k: v for k, v in raw_from_stack_file(ROOT / "Pulumi.dev.yaml").items()}
    t0 = time.monotonic()
    first = real(config, "up")
    FIGURES["real engine: dev stack created (pulumi up)"] = first["seconds"]
    applied = model(config)         # the model's report of the state both sides are in
    found: list[str] = []
    for name, change, apply in CHAIN:
        head = deep(copy.deepcopy(config), change)
        preview = real(head, "preview")
        FIGURES[f"real engine: preview of {name}"] = preview["seconds"]
        plan = model(head, keep=apply)
        lines = compare(plan, preview["preview"])
        found += [f"{name}: {line}" for line in lines]
        if not lines:
            mine = build(applied, plan)
            theirs = from_preview(preview["preview"], plan["outputs"].get("nodeIps") or {}, "dev")
            a = sorted((i.name, i.op, i.action) for i in mine.items if i.kind != "new")
            b = sorted((i.name, i.op, i.action) for i in theirs.items if i.kind != "new")
            if a != b:
                found.append(f"{name}: the reviews differ: model only {sorted(set(a) - set(b))[:5]}, "
                             f"preview only {sorted(set(b) - set(a))[:5]}")
            # what each review warns of (a preview has no base outputs: its
            # members come from the stack and the VMs the run deletes)
            warned = [(d, mine.dangers.count(d), theirs.dangers.count(d)) for d in set(mine.dangers + theirs.dangers)]
            found += [f"{name}: danger said {m} times by the model's review, {t} by the preview's: {d}"
                      for d, m, t in sorted(warned) if m != t]
        if apply:
            config, applied = head, plan
            FIGURES[f"real engine: up of {name}"] = real(config, "up")["seconds"]
    # the program converges: after the last change, nothing left to do
    FIGURES["real engine: preview --expect-no-changes"] = real(config, "expect-no-changes")["seconds"]
    # `pulumi destroy`: the model's batches against the order the engine starts its deletes
    out = real(config, "destroy")
    FIGURES["real engine: destroy"] = out["seconds"]
    found += [f"destroy: {line}" for line in delete_order(model.destroy(), out["steps"])]
    FIGURES["real engine: the whole chain"] = time.monotonic() - t0
    print("\n".join(f"{k:60} {v:7.1f} s" for k, v in FIGURES.items()))
    assert not found, f"{len(found)} disagreements over {len(CHAIN)} changes and a destroy:\n" + "\n".join(found)


def delete_order(batches: list[list[str]], steps: list[dict]) -> list[str]:
    """Where the real engine's deletes disagree with the model's batches. The
    engine runs one antichain of deletes, waits for all of it, then starts the
    next (pkg/resource/deploy/deployment_executor.go:590-627, v3.274.1), so
    the order it starts them in must never go back to an earlier batch of
    the model's; and both delete the same resources."""
    batch = {urn: i for i, b in enumerate(batches) for urn in b}
    ours = [s["urn"] for s in steps if s["op"] == "delete" and "::pulumi:providers:" not in s["urn"]
            and s["urn"].split("::")[2] != "pulumi:pulumi:Stack"]
    out = [f"{u.rsplit('::', 1)[-1]}: deleted by the real engine, not by the model" for u in ours if u not in batch]
    out += [f"{u.rsplit('::', 1)[-1]}: deleted by the model, not by the real engine" for u in batch if u not in ours]
    highest, by = -1, ""
    for urn in ours:
        if urn not in batch:
            continue
        if batch[urn] < highest:
            out.append(f"{urn.rsplit('::', 1)[-1]}: the model deletes it in batch {batch[urn]}, before "
                       f"{by.rsplit('::', 1)[-1]} (batch {highest}), which the real engine started first")
        elif batch[urn] > highest:
            highest, by = batch[urn], urn
    return out
