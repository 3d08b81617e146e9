"""The real engine's bookkeeping of a `pulumi up`, as a model the lab and
`make review` share: state kept per URN between runs, the step each
registration becomes, what a failed step leaves, and the deletes after the
program. Sources: pulumi/pulumi `pkg/resource/deploy/step_generator.go`
(GenerateSteps, generateStepsFromDiff, calculateDependentReplacements,
GenerateDeletes, ScheduleDeletes) and `step_executor.go`.

The model decides; a caller executes (the lab over SSH and on its hosts, the
review by printing). For each registration the caller asks `plan()`, runs
what the step says (first the deletes of a delete-before-replace, then the
create or update), then reports `succeeded()` or `failed()`. After the
program, `deletes()` gives the batches to delete and `deleted()` drops them.
"""
from __future__ import annotations

import copy
import datetime as dt
import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from . import rules


@dataclass
class Resource:
    """One URN in state: what the last successful step left."""
    urn: str
    type: str
    name: str
    custom: bool
    inputs: dict                                   # plain values (secrets unwrapped, assets hashed)
    outputs: dict
    id: str
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    parent: str = ""
    options: dict = field(default_factory=dict)    # delete_before_replace, replace_on_changes, retain_on_delete


@dataclass
class Registration:
    """What the program asks for (a RegisterResource request, plain)."""
    urn: str
    type: str
    name: str
    custom: bool
    inputs: dict
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    parent: str = ""
    options: dict = field(default_factory=dict)


@dataclass
class Step:
    """What the engine does with one registration."""
    urn: str
    type: str
    name: str
    op: str                                   # same | create | update | replace
    changed: tuple[str, ...] = ()
    replace_keys: tuple[str, ...] = ()
    delete_before_replace: bool = False
    delete_first: list[Resource] = field(default_factory=list)   # DBR: deleted before the create
    old: Resource | None = None
    new: Registration | None = None
    reason: str = ""
    ignored: dict = field(default_factory=dict)   # ignoreChanges: key -> the old value applied instead
    # what runs on the host (Commands): "create" | "update" | None, and its text
    action: str | None = None
    script: str | None = None

    @property
    def runs(self) -> bool:
        return self.script is not None and self.script.strip() not in ("", "true", ":")


def provider_deletes(res: Resource) -> bool:
    """Whether deleting `res` calls its provider: not for a component, and
    not with retainOnDelete (pulumi/pulumi deploy/step.go, DeleteStep.Apply:
    the provider's Delete is skipped when the old state has RetainOnDelete;
    the resource only leaves the state, on a delete, a replace and a destroy)."""
    return res.custom and not res.options.get("retain_on_delete")


class NotRun(RuntimeError):
    """A step the engine does not start: an earlier step of this run failed
    (the step executor stops launching new steps, step_executor.go)."""


def plain(value: Any) -> Any:
    """A value comparable the way the engine compares properties: assets by
    their content hash (the engine hashes asset contents), the rest as is."""
    path = getattr(value, "path", None)
    if path is not None and type(value).__name__ in ("FileAsset", "FileArchive"):
        with open(path, "rb") as f:
            return {"asset": type(value).__name__, "hash": hashlib.sha256(f.read()).hexdigest()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class Engine:
    def __init__(self, now: Callable[[], dt.datetime] | None = None):
        self.state: dict[str, Resource] = {}
        # old copies of create-before-delete replacements, deleted after a
        # successful run; a failed run leaves them for the next one
        self.pending_deletes: list[Resource] = []
        self.now = now
        self.lock = threading.Lock()
        self.begin()

    # -- one `pulumi up` -----------------------------------------------------
    def begin(self, replace: Iterable[str] = ()) -> None:
        """A new run. `replace`: URNs to replace whatever their diff
        (`pulumi up --replace URN`: isTargetedReplace in step_generator.go)."""
        self.replace_targets = set(replace)
        self.run_id = getattr(self, "run_id", 0) + 1
        self.registered: set[str] = set()
        self.steps: list[Step] = []
        self.failed_steps: list[tuple[Step, str]] = []
        self.cancelled = False

    def plan(self, reg: Registration) -> Step:
        """The step for one registration (generateStepsFromDiff)."""
        with self.lock:
            if reg.urn in self.registered:
                raise RuntimeError(f"duplicate resource URN {reg.urn}")
            self.registered.add(reg.urn)
            old = self.state.get(reg.urn)
            step = Step(urn=reg.urn, type=reg.type, name=reg.name, op="create", old=old, new=reg)
            if old is not None and reg.options.get("ignore_changes"):
                # processIgnoreChanges (step_generator.go): before the diff,
                # each ignored property takes its old input value, so the
                # provider sees no change there and the state keeps it.
                for key in reg.options["ignore_changes"]:
                    key = key.split(".", 1)[0].split("[", 1)[0]
                    step.ignored[key] = copy.deepcopy(old.inputs.get(key, rules.ABSENT))
                    if key in old.inputs:
                        reg.inputs[key] = copy.deepcopy(old.inputs[key])
                    else:
                        reg.inputs.pop(key, None)
            if old is not None:
                d = rules.diff(reg.type, old.inputs, reg.inputs, old.outputs, custom=reg.custom,
                               replace_on_changes=reg.options.get("replace_on_changes") or [],
                               delete_before_replace=bool(reg.options.get("delete_before_replace")),
                               now=self.now)
                step.op, step.changed, step.replace_keys = d.op, d.changed, d.replace_keys
                step.delete_before_replace, step.reason = d.delete_before_replace, d.reason
                if reg.urn in self.replace_targets and reg.custom:
                    # step_generator.go: a targeted replace is a diff that
                    # blames "id" and is never asked of the provider, so the
                    # provider's delete-before-replace (a named libvirt
                    # resource's) does not apply; only the goal's
                    # deleteBeforeReplace option decides
                    # (`if goal.DeleteBeforeReplace != nil`).
                    step.op, step.replace_keys, step.reason = "replace", ("id",), "pulumi up --replace"
                    step.delete_before_replace = bool(reg.options.get("delete_before_replace"))
                if step.op == "replace" and step.delete_before_replace:
                    step.delete_first = self._dependent_replacements(old)
            if reg.custom and step.op != "same" and self.cancelled:
                raise NotRun(f"{reg.name}: not started, an earlier step of this run failed")
            if reg.type in (rules.COMMAND,):
                step.action, step.script = _command_action(step.op, reg.inputs)
            self.steps.append(step)
            # The DBR deletes happen now, before the create: state forgets them.
            for victim in step.delete_first:
                self.state.pop(victim.urn, None)
            return step

    def succeeded(self, step: Step, id_: str, outputs: dict) -> None:
        reg = step.new
        assert reg is not None
        with self.lock:
            if step.op == "replace" and not step.delete_before_replace and step.old is not None:
                self.pending_deletes.append(step.old)       # create-before-delete: old goes last
            self.state[reg.urn] = Resource(
                urn=reg.urn, type=reg.type, name=reg.name, custom=reg.custom, inputs=copy.deepcopy(reg.inputs),
                outputs=outputs, id=id_, dependencies=list(reg.dependencies),
                property_dependencies={k: list(v) for k, v in reg.property_dependencies.items()},
                parent=reg.parent, options=dict(reg.options))

    def same(self, step: Step) -> Resource:
        """A "same" step: outputs come from state; the new dependencies and
        options are recorded (the engine writes the new goal state)."""
        with self.lock:
            res = self.state[step.urn]
            reg = step.new
            if reg is not None:
                res.dependencies = list(reg.dependencies)
                res.property_dependencies = {k: list(v) for k, v in reg.property_dependencies.items()}
                res.parent, res.options = reg.parent, dict(reg.options)
            return res

    def failed(self, step: Step, error: str) -> None:
        """A failed create leaves nothing in state (the next run creates
        again); a failed update keeps the old inputs and outputs (the next
        run retries the update); a failed create of a replacement keeps the
        old resource. Either way no new step starts (step_executor.go:
        a failed step cancels the deployment's remaining steps)."""
        with self.lock:
            self.failed_steps.append((step, error))
            self.cancelled = True
            if step.op == "replace" and step.delete_before_replace:
                self.state.pop(step.urn, None)      # its old copy is gone already

    # -- after the program ---------------------------------------------------
    def deletes(self) -> list[list[Resource]]:
        """Resources the run no longer registers and old copies of replaced
        ones, in batches run one after another (GenerateDeletes +
        ScheduleDeletes). A batch is built as the engine builds its
        antichains (pkg/resource/deploy/step_generator.go:2883-2932, v3.274.1):
        from the bottom, a resource once none of its condemned dependencies
        is left, and the list reversed. So a resource is deleted only once
        everything that depends on it is, and a short chain waits in the
        batch its height puts it in: in a destroy of control planes that
        joined one after the other, the last joiner's leave steps run before
        the previous one's (seen in the lab under the real engine).
        Nothing is deleted after a failed run."""
        if self.cancelled:
            return []
        with self.lock:
            gone = [r for urn, r in self.state.items() if urn not in self.registered]
            todo = gone + list(self.pending_deletes)
            order = {urn: i for i, urn in enumerate(self.state)}
            children: dict[str, list[Resource]] = {}
            for r in self.state.values():
                children.setdefault(r.parent, []).append(r)
            components = {urn for urn, r in self.state.items() if not r.custom}
        deps = {id(r): self._dependencies_of(r, order, children, components) for r in todo}
        batches: list[list[Resource]] = []
        remaining = list(todo)
        while remaining:
            urns = {r.urn for r in remaining}
            batch = [r for r in remaining if not (deps[id(r)] & (urns - {r.urn}))]
            if not batch:
                raise RuntimeError("engine: a dependency cycle among deletes: "
                                   + ", ".join(r.urn for r in remaining))
            batches.append(batch)
            taken = {id(r) for r in batch}
            remaining = [r for r in remaining if id(r) not in taken]
        batches.reverse()
        return batches

    @staticmethod
    def _dependencies_of(r: Resource, order: dict[str, int], children: dict[str, list[Resource]],
                         components: set[str]) -> set[str]:
        """DependencyGraph.DependenciesOf (pkg/resource/graph/dependency_graph.go:207-252,
        childrenOf: 404-421): its dependencies, property dependencies and
        parent; for a dependency that is a component, every descendant of it
        that comes before `r` in the state's order."""
        direct = set(r.dependencies) | {d for ds in r.property_dependencies.values() for d in ds}
        out = set(direct) | ({r.parent} if r.parent else set())
        here = order.get(r.urn, len(order))
        for component in direct & components:
            todo, seen = [component], set()
            while todo:
                for child in children.get(todo.pop(), []):
                    if child.urn in seen:
                        continue
                    seen.add(child.urn)
                    todo.append(child.urn)
                    if order.get(child.urn, len(order)) < here:
                        out.add(child.urn)
        return out

    def destroy(self) -> list[list[Resource]]:
        """`pulumi destroy`: everything in state, in the same batches."""
        self.begin()
        return self.deletes()

    def deleted(self, res: Resource) -> None:
        with self.lock:
            if res in self.pending_deletes:
                self.pending_deletes.remove(res)
            elif self.state.get(res.urn) is res:
                del self.state[res.urn]

    # -- a DBR's dependents --------------------------------------------------
    def _dependent_replacements(self, root: Resource) -> list[Resource]:
        """calculateDependentReplacements: every resource that depends on
        `root` through a property that forces its own replacement once the
        value is unknown, transitively; in dependency order."""
        replace = {root.urn}
        out: list[Resource] = []
        for res in self._in_dependency_order():
            if res.urn in replace or not res.custom:
                continue
            keys = [k for k, deps in res.property_dependencies.items() if any(d in replace for d in deps)]
            if not keys:
                continue
            unknown = {**res.inputs, **{k: _Unknown() for k in keys}}
            d = rules.diff(res.type, res.inputs, unknown, res.outputs, custom=True,
                           replace_on_changes=res.options.get("replace_on_changes") or [])
            if d.replace_keys:
                replace.add(res.urn)
                out.append(res)
        return out

    def _in_dependency_order(self) -> list[Resource]:
        done: set[str] = set()
        order: list[Resource] = []

        def visit(urn: str, stack: tuple = ()) -> None:
            if urn in done or urn not in self.state or urn in stack:
                return
            res = self.state[urn]
            for dep in res.dependencies + [d for ds in res.property_dependencies.values() for d in ds]:
                visit(dep, stack + (urn,))
            done.add(urn)
            order.append(res)
        for urn in list(self.state):
            visit(urn)
        return order

    # -- reading -------------------------------------------------------------
    def ran(self) -> list[Step]:
        """Steps of this run that executed a script on a host."""
        return [s for s in self.steps if s.runs]


class _Unknown:
    """A computed value: compares unequal to everything."""
    def __eq__(self, other):
        return False

    def __ne__(self, other):
        return True

    __hash__ = object.__hash__


def _command_action(op: str, inputs: dict) -> tuple[str | None, str | None]:
    """Which of a Command's scripts runs: `create` on a create and on the
    create-replacement of a replace; `update` on an update, or `create` again
    when `update` is empty (pulumi-command common/inputs.go: "The command to
    run on update, if empty, create will run again"); nothing on same."""
    if op in ("create", "replace"):
        return "create", inputs.get("create")
    if op == "update":
        if inputs.get("update"):
            return "update", inputs.get("update")
        return "create", inputs.get("create")
    return None, None
