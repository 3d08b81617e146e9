"""The program's registrations driven through the engine model: a resource
monitor for Pulumi's mock runtime that plans each registration like the real
engine and hands only what the engine would run to an executor.

An executor has two methods:
    execute(step, inputs) -> (id, outputs)   create or update (its `step.action`)
    delete(resource)                         the resource's delete, if any
`inputs` are the deserialized inputs (secrets unwrapped, assets as objects).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from pulumi.runtime import mocks as pmocks
from pulumi.runtime import rpc
from pulumi.runtime.proto import resource_pb2

from . import rules
from .core import Engine, Registration, Resource, Step, plain, provider_deletes

SECRET_SIG = rpc._special_sig_key  # noqa: SLF001 - the wire marker of a secret value
SECRET_VALUE = rpc._special_secret_sig  # noqa: SLF001


class Executor(Protocol):
    def execute(self, step: Step, inputs: dict) -> tuple[str, dict]: ...
    def delete(self, resource: Resource) -> None: ...


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE


def unwrap(value: Any) -> Any:
    """The plain value, secrets unwrapped, recursively."""
    if is_secret(value):
        return unwrap(value.get("value"))
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def registration(urn: str, request, inputs: dict) -> Registration:
    return Registration(
        urn=urn, type=request.type, name=request.name, custom=bool(request.custom),
        inputs=plain(unwrap(inputs)), dependencies=list(request.dependencies),
        property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
        parent=request.parent,
        options={"delete_before_replace": bool(request.deleteBeforeReplace),
                 "replace_on_changes": list(request.replaceOnChanges),
                 "ignore_changes": list(request.ignoreChanges),
                 "retain_on_delete": bool(request.retainOnDelete)})


def drive(monitor: pmocks.MockMonitor, engine: Engine, executor: Executor, urn: str,
          request) -> resource_pb2.RegisterResourceResponse:
    """One RegisterResource under the engine: plan, execute, record, answer."""
    pmocks._ensure_event_loop()  # noqa: SLF001
    inputs = rpc.deserialize_properties(request.object)
    reg = registration(urn, request, inputs)
    step = engine.plan(reg)
    for key, value in step.ignored.items():        # ignoreChanges: the old value is what is applied
        if value is rules.ABSENT:
            inputs.pop(key, None)
        else:
            inputs[key] = value
    if step.op == "same":
        res = engine.same(step)
        id_, outputs = res.id, res.outputs
    elif not reg.custom:
        id_, outputs = "", {}
        engine.succeeded(step, id_, outputs)
    else:
        for victim in reversed(step.delete_first):       # DBR: dependents first, in reverse order
            if provider_deletes(victim):
                executor.delete(victim)
        if step.delete_before_replace and step.old is not None and provider_deletes(step.old):
            executor.delete(step.old)
        try:
            id_, outputs = executor.execute(step, dict(inputs))
        except BaseException as err:
            engine.failed(step, str(err))
            raise
        engine.succeeded(step, id_, outputs)
    obj = pmocks._sync_await(rpc.serialize_properties(outputs, {}))  # noqa: SLF001
    monitor.resources[urn] = pmocks.MockMonitor.ResourceRegistration(urn, id_, outputs)
    return resource_pb2.RegisterResourceResponse(urn=urn, id=id_, object=obj)


def run_deletes(engine: Engine, executor: Executor, parallel: int = 8) -> list[list[Resource]]:
    """After a successful program: delete what the engine says, batch by
    batch, the resources of a batch side by side (up to `parallel`, like the
    step executor's workers; no order among them). A failed delete stops
    after its batch and keeps the resource in state. Returns the batches."""
    batches: list[list[Resource]] = []
    for batch in engine.deletes():
        done: list[Resource] = []
        batches.append(done)
        def one(res: Resource) -> Resource:
            if provider_deletes(res):
                executor.delete(res)
            return res
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(batch)))) as pool:
            futures = [pool.submit(one, res) for res in batch]
        errors = []
        for future in futures:
            try:
                res = future.result()
            except Exception as err:            # noqa: BLE001 - raised below, after the batch
                errors.append(err)
                continue
            engine.deleted(res)
            done.append(res)
        if errors:
            raise errors[0]
    return batches
