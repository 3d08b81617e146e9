"""Step scripts shared by every component: the helpers every node carries
(common.sh; etcd.sh and the etcd.py it runs, which the etcd and Kubernetes
steps source), generic steps (a file from stdin, a verified systemd unit,
PEM files from stdin) and scheduled jobs (job.sh, job.timer: a script, its
service and its timer).

A step's script is `sudo bash -c` of: the values prelude, a `.` of each
helper it uses from LIB_DIR, a `# hakube step:` line naming its file, then the
step file itself. The helpers reach each node once, through its `helpers`
step (`install_helpers`), not inside every step: under the real engine a
step re-runs when its own text changes, so an edit of a helper would
otherwise make every step on every node an update.
"""
from __future__ import annotations

import string
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pulumi

from ..remote import prelude, sudo_bash  # noqa: F401 - re-exported for step tests
from ..remote import copy_file
from ..remote import step as make_step
from .plan import READY, Copy, Derived, Step, check

HERE = Path(__file__).parent
COMPONENTS = HERE.parent
LIB_DIR = "/usr/local/lib/hakube"
# name on the node -> the file in this repository
LIBS = {
    "common.sh": HERE / "common.sh",
    "etcd.sh": HERE / "etcd.sh",
    "etcd.py": HERE / "etcd_decide.py",     # run by etcd.sh's etcd_decide, not sourced
}
# the generic steps, by path: a step names its script file, never a name looked up
FILE = HERE / "file.sh"                     # a file from stdin, installed when it differs
UNIT = HERE / "unit.sh"                     # a systemd unit, verified first
PEM_FILES = HERE / "pem_files.sh"           # PEM files from stdin
METRICS = HERE / "metrics.sh"               # a node's metrics endpoint
JOB = HERE / "job.sh"                       # a scheduled job's script, service and timer
JOB_TIMER = HERE / "job.timer"
# what a node has, read as root: run by `make status` (ops/status.py) and
# served by hakube's exporter (monitoring.py)
PROBE = HERE / "probe.py"
STEP_MARK = "# hakube step: "


def lib_line(name: str, lib_dir: str = LIB_DIR) -> str:
    if name not in LIBS or not name.endswith(".sh"):
        raise ValueError(f"unknown helper {name!r}; known: {', '.join(LIBS)}")
    return f". {lib_dir}/{name}\n"


def step_name(path: Path) -> str:
    """components/loadbalancer/vip.sh -> loadbalancer/vip.sh (how reviews and tests name a script)."""
    return str(Path(path).resolve().relative_to(COMPONENTS))


def step_body(path: Path, values: Mapping[str, object], libs: Sequence[str] = (),
              lib_dir: str = LIB_DIR) -> str:
    """The script a step runs as root, before `sudo bash -c` quoting
    (`lib_dir`: where the helpers are; tests run steps against a copy)."""
    if not isinstance(path, Path):
        raise TypeError(f"a step names its script file (a Path), not {path!r}")
    sourced = "".join(lib_line(n, lib_dir) for n in ("common.sh", *libs))
    return prelude(values) + sourced + STEP_MARK + step_name(path) + "\n" + path.read_text()


def step_script(path: Path, values: Mapping[str, object], libs: Sequence[str] = (),
                lib_dir: str = LIB_DIR) -> str:
    """The step at `path` (its component's file, or FILE, UNIT, ... here)
    with its values and helpers, as `sudo bash -c` runs it."""
    return sudo_bash(step_body(path, values, libs, lib_dir))


def helpers_bundle() -> str:
    """Every helper, one after another behind a `#=== hakube-lib NAME` line:
    the stdin of each node's helpers step."""
    return "".join(f"#=== hakube-lib {name}\n{path.read_text()}" for name, path in sorted(LIBS.items()))


def install_helpers(lib_dir: str = LIB_DIR) -> str:
    """The helpers step: unpack the bundle on stdin into LIB_DIR (each file
    `bash -n` checked first, replaced atomically, only when it differs)."""
    return sudo_bash(prelude({"LIB_DIR": lib_dir}) + STEP_MARK + step_name(HERE / "helpers.sh") + "\n"
                     + (HERE / "helpers.sh").read_text())


def pem_bundle(pems: Sequence[str], names: Iterable[str]) -> str:
    """PEM blocks one after another, in the order of `names` (for messages)."""
    out = []
    for name, pem in zip(names, pems, strict=True):
        if pem.count("-----BEGIN ") != 1:
            raise ValueError(f"{name}: expected exactly one PEM block")
        out.append(pem.strip() + "\n")
    return "".join(out)


def pem_files_spec(files: Iterable[tuple[str, str, str, str]]) -> str:
    """PEM_FILES for pem_files.sh from (path, mode, owner, group) tuples."""
    return " ".join(":".join(f) for f in files)


def job(unit: str, description: str, calendar: str, enabled: bool, config_key: str, disabled_note: str,
        service: Path) -> dict:
    """The values of a scheduled job's step (JOB): the unit `unit`.service
    runs /usr/local/sbin/`unit` (the step's stdin, `job_body`) on the timer
    made from JOB_TIMER; `config_key` is what its messages tell a person to
    change, `disabled_note` why it is off."""
    timer = string.Template(JOB_TIMER.read_text()).substitute(description=description, calendar=calendar)
    return {"JOB": unit, "JOB_ENABLED": int(enabled), "JOB_CALENDAR": calendar, "JOB_CONFIG_KEY": config_key,
            "JOB_DISABLED_NOTE": disabled_note, "JOB_SERVICE": service.read_text(), "JOB_TIMER": timer}


def job_body(path: Path, values: Mapping[str, object], libs: Sequence[str] = ()) -> str:
    """The script a job's timer runs: its values, the helpers it sources, its file."""
    return "#!/bin/bash\n" + prelude(values) + "".join(lib_line(n) for n in libs) + path.read_text()


def job_step_script(values: Mapping[str, object], libs: Sequence[str] = ()) -> str:
    """The step that installs a job (its values from `job`)."""
    return step_script(JOB, values, libs)


def cert_check(stack: str, days: int, calendar: str, hakube_certs: Sequence[str],
               kubeadm_certs: Sequence[str] = ()) -> tuple[dict, str]:
    """The values of a node's cert-check job step and the script its timer
    runs (cert-check.sh): every certificate hakube put on the node, and
    kubeadm's where given, checked `days` ahead."""
    unit = "hakube-cert-check"
    values = job(unit, "certificates of this node checked against their expiry", calendar, True,
                 "hakube:pki.check", "", HERE / f"{unit}.service")
    return values, job_body(HERE / "cert-check.sh", {"CHECK_DAYS": days, "HAKUBE_STACK": stack,
                                                     "HAKUBE_CERTS": " ".join(hakube_certs),
                                                     "KUBEADM_CERTS": " ".join(kubeadm_certs)})


def realize(plan: Sequence[Step | Copy], *, parent, nodes: Mapping[str, object],
            sources: Mapping[str, object] | None = None, outside: Mapping[str, object] | None = None) -> dict:
    """A plan's steps as resources, in the plan's order: name -> the
    remote.Command. `nodes`: node name -> Node; `sources`: the outputs its
    Derived values read (name -> pulumi.Output); `outside`: what its steps
    run after that is not theirs (name -> a resource or a list of them)."""
    outside = outside or {}
    made: dict = {}

    def waits_on(node, name: str) -> list:
        if name == READY:
            return [node.ready]
        found = made[name] if name in made else outside[name]
        return list(found) if isinstance(found, (list, tuple)) else [found]

    def derive(value: Derived):
        read = [made[name].stdout if name in made else sources[name] for name in value.sources]
        out = pulumi.Output.all(*read).apply(lambda v: value.fn(*v))
        return pulumi.Output.secret(out) if value.secret else out

    def script(path, values: Mapping[str, object], libs: Sequence[str]):
        later = {k: v for k, v in values.items() if isinstance(v, Derived)}
        if not later:
            return step_script(path, values, libs)
        known = pulumi.Output.all(*(derive(v) for v in later.values()))
        return known.apply(lambda v: step_script(path, {**values, **dict(zip(later, v))}, libs))

    sources = sources or {}
    for s in check(list(plan), tuple(outside)):
        node = nodes[s.node]
        after = [r for a in s.after for r in waits_on(node, a)]
        if isinstance(s, Copy):
            made[s.name] = copy_file(s.name, node, s.source, s.dest, parent=parent, after=after)
            continue
        stdin = derive(s.stdin) if isinstance(s.stdin, Derived) else s.stdin
        create = script(s.script, s.values, s.libs) if s.script is not None else "true"
        delete = script(s.delete, s.delete_values, s.libs) if s.delete is not None else None
        made[s.name] = make_step(s.name, node.connection if s.gate else node, create, stdin=stdin,
                                 update=create if s.update else None, secret=s.secret,
                                 secret_stdout=s.secret_stdout, delete=delete, parent=parent, after=after)
    return made
