"""Step scripts shared by every component: helpers (common.sh, etcd's
lib.sh) and generic steps (a file from stdin, a verified systemd unit, PEM
files from stdin).

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

from ..remote import prelude, sudo_bash  # noqa: F401 - re-exported for step tests

HERE = Path(__file__).parent
COMPONENTS = HERE.parent
LIB_DIR = "/usr/local/lib/hakube"
# name on the node -> the file in this repository
LIBS = {
    "common.sh": HERE / "common.sh",
    "etcd.sh": COMPONENTS / "etcd" / "lib.sh",
    "etcd.py": COMPONENTS / "etcd" / "decide.py",     # run by etcd.sh's etcd_decide, not sourced
}
STEP_MARK = "# hakube step: "


def lib_line(name: str, lib_dir: str = LIB_DIR) -> str:
    if name not in LIBS or not name.endswith(".sh"):
        raise ValueError(f"unknown helper {name!r}; known: {', '.join(LIBS)}")
    return f". {lib_dir}/{name}\n"


def step_name(path: Path) -> str:
    """components/etcd/restart.sh -> etcd/restart.sh (how reviews and tests name a script)."""
    return str(Path(path).resolve().relative_to(COMPONENTS))


def step_body(step: Path | str, values: Mapping[str, object], libs: Sequence[str] = (),
              lib_dir: str = LIB_DIR) -> str:
    """The script a step runs as root, before `sudo bash -c` quoting
    (`lib_dir`: where the helpers are; tests run steps against a copy)."""
    path = Path(step) if isinstance(step, Path) else HERE / f"{step}.sh"
    sourced = "".join(lib_line(n, lib_dir) for n in ("common.sh", *libs))
    return prelude(values) + sourced + STEP_MARK + step_name(path) + "\n" + path.read_text()


def step_script(step: Path | str, values: Mapping[str, object], libs: Sequence[str] = (),
                lib_dir: str = LIB_DIR) -> str:
    """`step` is a path, or the name of a shared step here (file, unit, pem_files)."""
    return sudo_bash(step_body(step, values, libs, lib_dir))


def helpers_bundle() -> str:
    """Every helper, one after another behind a `#=== hakube-lib NAME` line:
    the stdin of each node's helpers step."""
    return "".join(f"#=== hakube-lib {name}\n{path.read_text()}" for name, path in sorted(LIBS.items()))


def install_helpers(lib_dir: str = LIB_DIR) -> str:
    """The helpers step: unpack the bundle on stdin into LIB_DIR (each file
    `bash -n` checked first, replaced atomically, only when it differs)."""
    return sudo_bash(prelude({"LIB_DIR": lib_dir}) + STEP_MARK + "steps/helpers.sh\n"
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


def cert_check(stack: str, days: int, calendar: str, hakube_certs: Sequence[str],
               kubeadm_certs: Sequence[str] = ()) -> tuple[dict, str]:
    """The values of a node's cert-check step (etcd/job.sh, the scheduled job
    step) and the script its timer runs (cert-check.sh): every certificate
    hakube put on the node, and kubeadm's where given, checked `days` ahead."""
    unit = "hakube-cert-check"
    timer = string.Template((COMPONENTS / "etcd" / "job.timer").read_text()).substitute(
        description="certificates of this node checked against their expiry", calendar=calendar)
    values = {"JOB": unit, "JOB_ENABLED": 1, "JOB_CALENDAR": calendar, "JOB_CONFIG_KEY": "hakube:pki.check",
              "JOB_DISABLED_NOTE": "", "JOB_SERVICE": (HERE / f"{unit}.service").read_text(), "JOB_TIMER": timer}
    script = "#!/bin/bash\n" + prelude({"CHECK_DAYS": days, "HAKUBE_STACK": stack,
                                         "HAKUBE_CERTS": " ".join(hakube_certs),
                                         "KUBEADM_CERTS": " ".join(kubeadm_certs)}) + (HERE / "cert-check.sh").read_text()
    return values, script


def cert_check_step_script(values: Mapping[str, object]) -> str:
    """The step that installs the check's script, service and timer."""
    return step_script(COMPONENTS / "etcd" / "job.sh", values)
