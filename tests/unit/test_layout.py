"""The shape of components/: one place builds remote steps, and every
function is short enough to read on one screen."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.harness import ROOT

COMPONENTS = ROOT / "components"
LONGEST = 60


def _sources() -> list[tuple[Path, ast.AST]]:
    return [(p, ast.parse(p.read_text(), str(p))) for p in sorted(COMPONENTS.rglob("*.py"))]


def _constructs(tree: ast.AST, names: set[str]) -> list[int]:
    """Lines that call `remote.<name>(...)` or a bare `<name>(...)`."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            called = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
            if called in names:
                lines.append(node.lineno)
    return lines


def test_remote_commands_and_copies_are_built_in_remote_py_only():
    where = {f"{p.relative_to(ROOT)}:{line}" for p, tree in _sources()
             for line in _constructs(tree, {"Command", "CopyToRemote"})}
    assert where and all(w.startswith("components/remote.py:") for w in where), sorted(where)


def test_no_function_in_components_runs_past_sixty_lines():
    long = [f"{p.relative_to(ROOT)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for p, tree in _sources() for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > LONGEST]
    assert not long, "split these (a function a reader can hold on one screen):\n  " + "\n  ".join(long)


def test_no_file_outside_etcd_names_one_of_etcds_files():
    """etcd's scripts and units are etcd's: what review says of them lives in
    etcd/notes.py, and other components reach them only through etcd's
    Face (etcd/plan.py), never by their path."""
    etcd = COMPONENTS / "etcd"
    names = [str(p.relative_to(etcd)) for p in etcd.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")]
    found = [f"{p.relative_to(ROOT)} names etcd/{name}"
             for top in ("components", "config", "ops", "review", "engine")
             for p in (ROOT / top).rglob("*") if p.is_file() and p.suffix in (".py", ".sh") and etcd not in p.parents
             for name in names if f"etcd/{name}" in p.read_text()]
    # nor by a path put together: HERE.parent / "etcd" / "install.sh"
    found += [f"{p.relative_to(ROOT)} builds a path into etcd/" for p in (ROOT / "components").rglob("*.py")
              if etcd not in p.parents and re.search(r"""["']etcd["']\s*/""", p.read_text())]
    assert not found, found


def _layout() -> list[str]:
    """The README's layout block: the paths each line names first."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Layout\n\n```\n", 1)[1].split("```\n", 1)[0]
    paths, parent = [], ""
    for line in block.splitlines():
        names = line[:35].split()
        if not names:
            continue
        if not line.startswith(" "):
            parent = names[0] if names[0].endswith("/") else ""
        for name in names:
            name = name.rstrip(",")
            if "<" in name:
                continue
            paths.append(parent + name if line.startswith("  ") else name)
    return paths


def test_the_readmes_layout_names_files_that_exist_and_every_component():
    named = _layout()
    missing = [p for p in named if not (ROOT / p).exists()]
    assert not missing, f"the README's layout names what is not in the tree: {missing}"
    tops = {p.name + ("/" if p.is_dir() else "") for p in ROOT.iterdir()
            if not p.name.startswith(".") and p.name not in ("README.md", "requirements.txt")
            and not p.name.startswith("Pulumi.")}
    parts = {p.name + ("/" if p.is_dir() else "") for p in COMPONENTS.iterdir() if p.name != "__pycache__"}
    listed = {p.split("/")[0] + ("/" if "/" in p else "") for p in named} | {p.split("/", 1)[1] for p in named
                                                                             if p.startswith("components/")}
    assert not (tops - listed), f"top-level entries the layout leaves out: {sorted(tops - listed)}"
    assert not (parts - listed), f"components the layout leaves out: {sorted(parts - listed)}"


def test_the_readme_opens_for_a_newcomer_within_150_lines():
    """What hakube is, the two commands and what they give, what runs
    without a libvirt host, and where things are: before any reference."""
    lines = (ROOT / "README.md").read_text().splitlines()
    heads = [line for line in lines[:150] if line.startswith("## ")]
    assert heads[:3] == ["## Set-up on a fresh machine", "## Without a libvirt host", "## Layout"], heads
    opening = "\n".join(lines[:150])
    assert "make up " in opening and "make test " in opening and "The *seed*" in opening
    end_of_layout = next(i for i, line in enumerate(lines) if line == "## Layout") + 3
    assert "```" in lines[end_of_layout:150], "the layout block ends within the first 150 lines"


def test_no_readme_line_runs_past_300_characters():
    """A reader scrolls down, not sideways: long reference tables live in docs/."""
    long = [(n, len(line)) for n, line in enumerate((ROOT / "README.md").read_text().splitlines(), 1)
            if len(line) > 300]
    assert not long, f"README lines over 300 characters (line, length): {long}"


def test_kubernetes_takes_one_name_from_etcd():
    """What Kubernetes needs of etcd (its endpoints, the client files' paths,
    how to run etcdctl, what to wait on) is etcd's Face, and nothing else."""
    names = set()
    for path in (COMPONENTS / "kubernetes").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and "etcd" in (node.module or "").split("."):
                names |= {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                names |= {a.name for a in node.names if "etcd" in a.name.split(".")}
    assert names == {"etcd.plan.Face"}, names
