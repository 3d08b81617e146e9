"""A component's plan as plain values: which steps run on which node, with
which script, values and stdin, after what. No Pulumi here: a plan is a
function of the spec alone, so it can be read, compared and snapshot-tested
without the engine or mocks. `steps.realize` turns a plan into resources.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional

READY = "ready"         # in `after`: the node's own readiness gate


def digest(*parts: str) -> str:
    """A short stable hash of payloads (what a restart is for, a token id)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Derived:
    """A value known only once the stack runs: `fn` of the output that
    `source` names (an input realize is handed, e.g. a generated key), or
    of the outputs a tuple of names names, one argument each. Secret unless
    said otherwise. A step's stdin, or one of its values."""
    source: str | tuple[str, ...]   # an output realize is handed, or a step of the plan (its stdout)
    fn: Callable[..., str]
    secret: bool = True

    @property
    def sources(self) -> tuple[str, ...]:
        return self.source if isinstance(self.source, tuple) else (self.source,)


@dataclass(frozen=True)
class Step:
    """One step on one node. `script` runs on create, and on update when
    the script's text changed (put what must re-run a step in its values);
    `delete` runs when the stack drops the step: a step with a delete and
    no script does nothing until then; `update`: the script is also given
    as the step's update (the same text: what the provider runs on an
    update either way, but an input of its own). `after`: steps of the same plan by
    name, READY, or a name of something outside the plan that realize is
    handed (`outside`). `gate`: on the node's bare connection (before its
    machine id is known: a new disk does not re-run it). `converge`: `make
    converge` runs it again."""
    name: str
    node: str
    script: Optional[Path]
    values: Mapping[str, object] = field(default_factory=dict)
    libs: tuple[str, ...] = ()
    stdin: str | Derived | None = None
    secret: bool = False
    after: tuple[str, ...] = ()
    delete: Optional[Path] = None
    delete_values: Mapping[str, object] = field(default_factory=dict)
    gate: bool = False
    converge: bool = False
    update: bool = False
    secret_stdout: bool = False     # its stdout is a secret output (a later step's Derived may read it)

    def __post_init__(self) -> None:
        if self.script is None and self.delete is None:
            raise ValueError(f"{self.name}: a step runs a script on create, on delete, or both")


@dataclass(frozen=True)
class Copy:
    """A file of the machine running Pulumi copied to a node (`source`, the
    local path; `dest`, the path on the node), after what `after` names."""
    name: str
    node: str
    source: str
    dest: str
    after: tuple[str, ...] = ()


def check(plan: list[Step | Copy], outside: tuple[str, ...] = ()) -> list[Step | Copy]:
    """A plan whose names are unique and whose `after` names only steps
    before it or what it declares it is handed from outside (so realize
    never waits on what it has not made)."""
    seen: set[str] = set()
    for step in plan:
        if step.name in seen or step.name in outside:
            raise ValueError(f"{step.name}: two steps of the plan have this name")
        unknown = [a for a in step.after if a != READY and a not in seen and a not in outside]
        if unknown:
            raise ValueError(f"{step.name}: runs after {', '.join(unknown)}, which no earlier step of the plan is")
        seen.add(step.name)
    return plan


MEMBERS_REMOVED = "members removed"
RUNS_AGAIN = "runs again"


@dataclass(frozen=True)
class Note:
    """What `make review` says when a step runs one of a component's
    scripts; each component keeps its own beside its files (NOTES)."""
    restarts: str = ""          # the service its RESTART_PAYLOAD change restarts, one node at a time
    danger: str = ""            # what it takes down whenever it runs ({nodes}: where it runs)
    danger_when: str = ""       # MEMBERS_REMOVED: a danger only when the run removes etcd members;
                                # RUNS_AGAIN: only where the step ran before (not on a new node)
    check: str = ""             # what it checks against the live cluster before it acts
    check_own_only: bool = False  # the check holds where it is the step's own script only
