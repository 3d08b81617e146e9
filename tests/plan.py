"""What a user's `pulumi up` would run: the program under the engine model
(engine/), its steps recorded by the echo executor, over successive runs.

    p = Planner("dev")          # the stack as its file says
    p.up()                      # first `pulumi up`: everything created
    run = p.up(change)          # a later one, with `change(raw)` applied to the config
    run.ran()                   # the steps that executed a script, in order
"""
from __future__ import annotations

import copy
from typing import Callable

from config import raw_from_stack_file
from engine import Engine
from review import STEP_MARK
from tests.graph.mocks import EchoExecutor
from tests.harness import ROOT, Run, run_program



def script_of(step) -> str | None:
    """The shipped script a step runs (its `# hakube step:` line), or its text."""
    if not step.runs:
        return None
    m = STEP_MARK.search(step.script)
    return m.group(1) if m else step.script.strip()


class Planner:
    def __init__(self, stack: str, overrides: dict | None = None, now=None):
        self.stack = stack
        self.raw = raw_from_stack_file(ROOT / f"Pulumi.{stack}.yaml")
        for key, value in (overrides or {}).items():
            self.raw[key] = _merge(self.raw.get(key), value)
        self.engine = Engine(now=now)
        self.executor = EchoExecutor()
        self.secrets: dict[str, str] = {}          # secret config (hakube:sshPrivateKey ...)

    def up(self, change: Callable[[dict], None] | None = None, replace=(), rebuild: str | None = None) -> Run:
        """`pulumi up` (`replace`: URNs, as `pulumi up --replace`; `rebuild`:
        a node, as `make rebuild NODE=...`)."""
        if change is not None:
            raw = copy.deepcopy(self.raw)
            change(raw)
            self.raw = raw
        return run_program(self.stack, self.raw, self.executor, secrets=self.secrets, engine=self.engine,
                           replace=replace, rebuild=rebuild)


def _merge(base, value):
    if isinstance(base, dict) and isinstance(value, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in value.items()}}
    return value


def ran(run: Run) -> list[tuple[str, str, str]]:
    """(resource name, action, script) of every step that ran a script, in order."""
    return [(s.name, s.action, script_of(s)) for s in run.ran()]


def ops(run: Run, *which: str) -> dict[str, str]:
    """name -> op for the steps whose op is among `which` (all but same by default)."""
    want = set(which) or {"create", "update", "replace"}
    return {s.name: s.op for s in run.steps if s.op in want}
