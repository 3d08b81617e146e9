"""Runs the real program (`__main__.py`) under Pulumi's mock runtime.

Shared by the graph tests (mocks that only echo inputs), the lab (mocks that
make each resource real) and `make review` (the program of two checkouts).
A recording monitor keeps, for every registration, what the engine would
see: type, name, parent, dependencies, provider and inputs with secrets
still marked.
"""
from __future__ import annotations

import asyncio
import json
import os
import runpy
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pulumi
from google.protobuf import struct_pb2
from pulumi.runtime import mocks as pmocks
from pulumi.runtime import settings, sync_await

from . import monitor as engine_monitor
from .core import Engine, NotRun

ROOT = Path(__file__).resolve().parents[1]
SECRET_SIG, SECRET_VALUE = engine_monitor.SECRET_SIG, engine_monitor.SECRET_VALUE


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    dependencies: list[str]
    provider: str
    inputs: dict                       # secrets appear as {SECRET_SIG: SECRET_VALUE, "value": ...}
    options: dict = field(default_factory=dict)
    property_dependencies: dict = field(default_factory=dict)


is_secret, unwrap = engine_monitor.is_secret, engine_monitor.unwrap


class RecordingMonitor(pmocks.MockMonitor):
    """Records every registration. With an `engine` (engine.Engine), each one
    is planned by the engine model and only what it would run reaches the
    mocks (then an executor: `execute(step, inputs)`, `delete(resource)`)."""

    def __init__(self, mocks: pmocks.Mocks, engine: Engine | None = None):
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        self.engine = engine
        self.run_id = engine.run_id if engine is not None else 0

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        """The engine's URN: the type qualified by the parent's whole chain of
        types, none for a child of the stack (pkg resource/urn.go; the SDK's
        mock keeps only the parent's own type and qualifies the stack's
        children with pulumi:pulumi:Stack). `pulumi preview --json` names
        resources this way, so the model's plan and the real one compare URN
        by URN."""
        if parent:
            qualified = parent.split("::")[2]
            if qualified != "pulumi:pulumi:Stack":
                type_ = f"{qualified}${type_}"
        return "urn:pulumi:" + "::".join([pulumi.get_stack(), pulumi.get_project(), type_, name])

    def RegisterResource(self, request):  # noqa: N802 - gRPC method name
        if request.type == "pulumi:pulumi:Stack":
            return super().RegisterResource(request)
        pmocks._ensure_event_loop()  # noqa: SLF001
        urn = self.make_urn(request.parent, request.type, request.name)
        kept = _keep(request.object)
        self.registrations.append(Registration(
            urn=urn, type=request.type, name=request.name, parent=request.parent,
            custom=request.custom, dependencies=list(request.dependencies),
            provider=request.provider, inputs=kept,
            options={"delete_before_replace": request.deleteBeforeReplace,
                     "additional_secret_outputs": list(request.additionalSecretOutputs)},
            property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
        ))
        if self.engine is None:
            return super().RegisterResource(request)
        if self.engine.run_id != self.run_id:
            # a registration still in flight from a program that failed: that
            # program's process is gone on a real `pulumi up`
            raise NotRun(f"{request.name}: registered by a program run that already failed")
        return engine_monitor.drive(self, self.engine, self.mocks, urn, request)


def _keep(value: Any) -> Any:
    """Inputs as the engine receives them: secret values keep their marker."""
    if isinstance(value, struct_pb2.Struct):
        return {k: _keep(v) for k, v in value.items()}
    if isinstance(value, struct_pb2.ListValue):
        return [_keep(v) for v in value]
    return value


@dataclass
class Run:
    registrations: list[Registration]
    outputs: dict[str, Any]
    monitor: RecordingMonitor
    steps: list = field(default_factory=list)      # engine.Step per registration, in order planned
    deleted: list = field(default_factory=list)    # engine.Resource deleted after the program
    delete_batches: list = field(default_factory=list)   # the same, batch by batch (a batch has no order)

    def delete_batch(self, name: str) -> int:
        """The index of the batch that deleted `name` (a later batch runs after)."""
        return next(i for i, batch in enumerate(self.delete_batches) for r in batch if r.name == name)

    def ran(self) -> list:
        """The steps that executed a script on a host."""
        return [s for s in self.steps if s.runs]

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def by_name(self, name: str) -> Registration:
        matches = [r for r in self.registrations if r.name == name]
        assert len(matches) == 1, f"{name}: {len(matches)} registrations"
        return matches[0]

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.registrations if r.urn == urn)

    def depends(self, name: str, on: str) -> bool:
        """True if `name` depends on `on`, directly or transitively."""
        target = self.by_name(on).urn
        seen, todo = set(), [self.by_name(name).urn]
        while todo:
            urn = todo.pop()
            if urn in seen:
                continue
            seen.add(urn)
            reg = self.by_urn(urn)
            if target in reg.dependencies:
                return True
            todo.extend(reg.dependencies)
        return False


def config_bag(raw: Mapping[str, Any], namespace: str = "hakube") -> dict[str, str]:
    """Stack config as the engine hands it to the runtime: JSON strings."""
    return {f"{namespace}:{k}": json.dumps(v) if not isinstance(v, str) else v
            for k, v in raw.items()}


def _quiet_failed_steps(loop, context: dict) -> None:
    if context.get("message", "").startswith("Future exception was never retrieved"):
        return
    loop.default_exception_handler(context)


def run_program(stack: str, raw_config: Mapping[str, Any], mocks: pmocks.Mocks,
                secrets: Mapping[str, str] | None = None, preview: bool = False,
                parallel: int | None = None, engine: Engine | None = None, replace=(),
                rebuild: str | None = None, root: Path = ROOT) -> Run:
    """Run `root`/__main__.py once (this checkout's by default), from a clean
    runtime, and collect everything it registered. With an `engine`, this is one `pulumi up` under the engine
    model: `mocks` executes what it plans, and after a program that finished
    without error the engine's deletes run (Run.deleted)."""
    settings.ROOT.set(None)
    # `make rebuild NODE=...` hands the program its node in HAKUBE_REBUILD
    os.environ.pop("HAKUBE_REBUILD", None)
    if rebuild:
        os.environ["HAKUBE_REBUILD"] = rebuild
    bag = config_bag(raw_config)
    secret_keys = []
    for key, value in (secrets or {}).items():
        bag[f"hakube:{key}"] = value
        secret_keys.append(f"hakube:{key}")
    pulumi.runtime.set_all_config(bag, secret_keys)
    if parallel:
        # The SDK registers resources from the loop's default executor: its
        # size bounds how many registrations (real steps, in the lab) overlap.
        loop = sync_await._ensure_event_loop()  # noqa: SLF001
        loop.set_default_executor(ThreadPoolExecutor(max_workers=parallel))
    if engine is not None:
        engine.begin(replace)
        # A failed step fails every registration waiting on it; asyncio then
        # reports each of those futures as "never retrieved" with the whole
        # step text. The run's failure is raised once, below; drop the echoes.
        loop = sync_await._ensure_event_loop()  # noqa: SLF001
        loop.set_exception_handler(_quiet_failed_steps)
    monitor = RecordingMonitor(mocks, engine)
    pmocks.set_mocks(mocks, project="hakube", stack=stack, preview=preview, monitor=monitor)

    outputs: dict[str, Any] = {}

    @pmocks.test
    def program():
        runpy.run_path(str(root / "__main__.py"), run_name="__hakube__")
        exported = {k: pulumi.Output.from_input(v) for k, v in settings.get_root_resource().outputs.items()}

        async def collect():
            for key, out in exported.items():
                value = await out.future()
                secret = await out._is_secret  # noqa: SLF001 - the flag the engine sees
                outputs[key] = {SECRET_SIG: SECRET_VALUE, "value": value} if secret else value
        return pulumi.Output.from_input(asyncio.ensure_future(collect()))

    cwd = os.getcwd()
    sys.path.insert(0, str(root))
    os.chdir(root)
    try:
        program()
    except BaseException:
        if engine is not None:
            # The program failed: the engine starts no new step (what is in
            # flight finishes), and nothing is deleted.
            engine.cancelled = True
        raise
    finally:
        os.chdir(cwd)
        sys.path.remove(str(root))
        os.environ.pop("HAKUBE_REBUILD", None)
    batches = engine_monitor.run_deletes(engine, mocks, parallel or 8) if engine is not None else []
    return Run(registrations=monitor.registrations, outputs=outputs, monitor=monitor,
               steps=list(engine.steps) if engine is not None else [],
               deleted=[r for batch in batches for r in batch], delete_batches=batches)
