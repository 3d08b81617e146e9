"""The engine model's own rules, on small hand-made graphs: each rule of
ENGINE.md as the step a registration becomes and what state keeps."""
from __future__ import annotations

import datetime as dt

import pytest

from engine import Engine, NotRun, Registration
from engine import rules

CMD, VOL, DOM, DISK = rules.COMMAND, rules.VOLUME, rules.DOMAIN, rules.CLOUDINIT


def reg(rname, type_=CMD, deps=(), prop_deps=None, **inputs) -> Registration:
    return Registration(urn=f"urn:{type_}::{rname}", type=type_, name=rname, custom=True, inputs=inputs,
                        dependencies=list(deps), property_dependencies=dict(prop_deps or {}))


def up(engine: Engine, regs, fail=()) -> list:
    """One run: plan each registration, 'execute' it (fail the named ones)."""
    engine.begin()
    steps = []
    for r in regs:
        try:
            step = engine.plan(r)
        except NotRun:
            steps.append(None)
            continue
        steps.append(step)
        if step.op == "same":
            engine.same(step)
        elif r.name in fail:
            engine.failed(step, "boom")
        else:
            engine.succeeded(step, f"{r.name}-id", dict(r.inputs))
    return steps


def test_same_update_replace_of_a_command():
    e = Engine()
    up(e, [reg("a", create="x", update="u", triggers=["1"])])
    same, = up(e, [reg("a", create="x", update="u", triggers=["1"])])
    assert same.op == "same" and not same.runs
    upd, = up(e, [reg("a", create="x", update="u2", triggers=["1"])])
    assert (upd.op, upd.action, upd.script) == ("update", "update", "u2")
    rep, = up(e, [reg("a", create="x", update="u2", triggers=["2"])])
    assert (rep.op, rep.action, rep.script) == ("replace", "create", "x")
    assert [r.name for b in e.deletes() for r in b] == ["a"]          # the old copy, after the run


def test_an_update_without_update_script_runs_create_again():
    e = Engine()
    up(e, [reg("a", create="x")])
    s, = up(e, [reg("a", create="x", stdin="new")])
    assert (s.op, s.action, s.script) == ("update", "create", "x")


def test_a_failed_create_leaves_nothing_and_a_failed_update_keeps_the_old_inputs():
    e = Engine()
    up(e, [reg("a", create="x")], fail={"a"})
    again, = up(e, [reg("a", create="x")])
    assert again.op == "create"
    up(e, [reg("a", create="x", update="u1")], fail={"a"})
    retry, = up(e, [reg("a", create="x", update="u1")])
    assert retry.op == "update" and retry.script == "u1"


def test_after_a_failure_no_new_step_starts_and_nothing_is_deleted():
    e = Engine()
    up(e, [reg("a", create="x"), reg("gone", create="y")])
    steps = up(e, [reg("a", create="x", update="u"), reg("b", create="z")], fail={"a"})
    assert steps[1] is None                       # b: not started
    assert e.deletes() == []                      # gone stays until a run succeeds
    steps = up(e, [reg("a", create="x", update="u"), reg("b", create="z")])
    assert [s.op for s in steps] == ["update", "create"]
    assert [r.name for b in e.deletes() for r in b] == ["gone"]


def test_deletes_come_in_reverse_dependency_batches():
    e = Engine()
    up(e, [reg("vm", DOM, name="vm", vcpu=1), reg("s1", deps=["urn:" + DOM + "::vm"], create="a", delete="d"),
           reg("s2", deps=["urn:" + CMD + "::s1"], create="b")])
    up(e, [])
    batches = [[r.name for r in b] for b in e.deletes()]
    assert batches == [["s2"], ["s1"], ["vm"]]


def test_deletes_are_batched_from_the_bottom_as_the_engine_schedules_them():
    """ScheduleDeletes (step_generator.go:2883-2932) builds its antichains from
    the resources nothing condemned is below, then reverses them: a short
    chain beside a long one is deleted with the long one's middle, not with
    its top. (A destroy of three control planes, seen under the real
    engine in the lab: master-03's leave steps all run before master-02's.)"""
    e = Engine()
    base = "urn:" + DOM + "::base"
    up(e, [reg("base", DOM, name="base", vcpu=1),
           reg("a1", deps=[base], create="a"), reg("a2", deps=["urn:" + CMD + "::a1"], create="b"),
           reg("b1", deps=[base], create="c")])
    up(e, [])
    batches = [sorted(r.name for r in b) for b in e.deletes()]
    assert batches == [["a2"], ["a1", "b1"], ["base"]]


def test_a_dependency_on_a_component_waits_for_its_children_registered_before():
    """DependenciesOf (dependency_graph.go:227-252): depending on a component
    is depending on each of its descendants that came before."""
    e = Engine()
    comp = reg("c", "hakube:index:Comp")
    comp.custom = False
    child = reg("child", create="x")
    child.parent = comp.urn
    up(e, [comp, child, reg("user", deps=[comp.urn], create="y")])
    up(e, [])
    order = [sorted(r.name for r in b) for b in e.deletes()]
    assert order.index(["user"]) < next(i for i, b in enumerate(order) if "child" in b)


def test_a_named_libvirt_replacement_deletes_first_with_the_dependents_it_forces():
    """A Volume replaced (size): its Domain (disks -> volume id, ForceNew) is
    deleted before it, then the volume; the readiness step depending on the
    domain's id only through depends_on is not replaced."""
    e = Engine()
    vol, dom = "urn:" + VOL + "::root", "urn:" + DOM + "::vm"
    first = [reg("root", VOL, name="r.qcow2", size=10),
             reg("vm", DOM, deps=[vol], prop_deps={"disks": [vol]}, name="vm", disks=[{"volumeId": "root-id"}]),
             reg("ready", deps=[dom], create="wait")]
    up(e, first)
    e.begin()
    step = e.plan(reg("root", VOL, name="r.qcow2", size=20))
    assert step.op == "replace" and step.delete_before_replace
    assert [r.name for r in step.delete_first] == ["vm"]


def test_a_targeted_replace_deletes_first_only_when_the_resource_asks_for_it():
    """`pulumi up --replace URN` (step_generator.go, isTargetedReplace) never
    asks the provider, whose delete-before-replace for a named volume then
    does not apply: create-before-delete, even with a real change too, unless
    the resource carries the deleteBeforeReplace option."""
    vol = "urn:" + VOL + "::root"
    for option, changed in ((False, False), (False, True), (True, False)):
        e = Engine()
        up(e, [reg("root", VOL, name="r.qcow2", size=10),
               reg("vm", DOM, deps=[vol], prop_deps={"disks": [vol]}, name="vm", disks=[{"volumeId": "root-id"}])])
        e.begin(replace=[vol])
        r = reg("root", VOL, name="r.qcow2", size=20 if changed else 10)
        r.options["delete_before_replace"] = option
        step = e.plan(r)
        assert step.op == "replace" and step.delete_before_replace is option, (option, changed)
        assert [x.name for x in step.delete_first] == (["vm"] if option else [])


def test_a_cloud_init_change_swaps_the_disk_and_keeps_the_domain():
    e = Engine()
    disk = "urn:" + DISK + "::seed"
    up(e, [reg("seed", DISK, name="s.iso", userData="a"),
           reg("vm", DOM, deps=[disk], prop_deps={"cloudinit": [disk]}, name="vm", cloudinit="seed-id")])
    e.begin()
    s = e.plan(reg("seed", DISK, name="s.iso", userData="b"))
    assert s.op == "replace" and s.delete_before_replace and s.delete_first == []
    e.succeeded(s, "seed-id-2", {})
    d = e.plan(reg("vm", DOM, deps=[disk], prop_deps={"cloudinit": [disk]}, name="vm", cloudinit="seed-id-2"))
    assert d.op == "update"


def test_tls_any_input_replaces_and_renewal_is_due_inside_the_window():
    now = [dt.datetime(2026, 11, 25, tzinfo=dt.timezone.utc)]
    e = Engine(now=lambda: now[0])
    cert = dict(validityPeriodHours=8760, earlyRenewalHours=720, certRequestPem="csr")
    e.begin()
    s = e.plan(reg("c", rules.LOCALLY_SIGNED, **cert))
    e.succeeded(s, "c", {"validityEndTime": "2027-11-25T00:00:00Z"})
    assert up(e, [reg("c", rules.LOCALLY_SIGNED, **cert)])[0].op == "same"
    now[0] = dt.datetime(2027, 10, 27, tzinfo=dt.timezone.utc)           # 29 days before the end
    renewed, = up(e, [reg("c", rules.LOCALLY_SIGNED, **cert)])
    assert renewed.op == "replace" and renewed.replace_keys == ("readyForRenewal",)
    assert up(e, [reg("k", rules.PRIVATE_KEY, algorithm="ED25519")])[0].op == "create"
    assert up(e, [reg("k", rules.PRIVATE_KEY, algorithm="ECDSA")])[0].op == "replace"


def test_an_unknown_type_is_refused_by_name():
    with pytest.raises(NotImplementedError, match="aws:s3"):
        rules.diff("aws:s3/bucket:Bucket", {"a": 1}, {"a": 2}, {})


def test_a_step_cannot_have_both_triggers_and_an_update_script():
    """A triggers change replaces a Command, which runs its create and never
    its update: the step factory refuses the combination instead of letting
    an update script that would never run look like it does."""
    from components.remote import step
    with pytest.raises(ValueError, match="never its update"):
        step("x", None, "true", update="restart", triggers=["1"], parent=None, after=[])
