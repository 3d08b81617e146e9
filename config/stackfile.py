"""Reading `Pulumi.<stack>.yaml` directly, for tests and tools that run
without the Pulumi engine (the lab, `make check-config`)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from .reader import ConfigError
from .spec import NAMESPACE, Spec, load


class StackFileError(ConfigError):
    """The stack file itself cannot be read (missing, not YAML, not a mapping)."""

    def __init__(self, problem: str):
        super().__init__([problem])

    def __str__(self) -> str:
        return self.problems[0]


def stacks(root: Path) -> list[str]:
    """The stacks that have a file in `root`."""
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in Path(root).glob("Pulumi.*.yaml"))


def raw_from_stack_file(path: Path) -> dict[str, Any]:
    """The `hakube:*` keys of a stack file, namespace stripped. Keys of other
    namespaces are left to their owners; secure (encrypted) values stay opaque."""
    path = Path(path)
    if not path.exists():
        stack = path.name[len("Pulumi."):-len(".yaml")]
        raise StackFileError(f"no stack {stack!r}: there is no {path.name} in {path.parent.resolve()}; the stacks "
                             f"are: {', '.join(stacks(path.parent)) or '(none)'}. Pick one (STACK=dev), or make "
                             f"one from another: cp Pulumi.dev.yaml {path.name}, then edit it")
    try:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        raise StackFileError(f"{path.name} is not valid YAML: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("config") or {}, dict):
        raise StackFileError(f"{path.name}: a stack file is a mapping with a `config:` mapping of keys "
                             "(hakube:nodes: ..., as Pulumi.dev.yaml has them)")
    config = doc.get("config") or {}
    raw: dict[str, Any] = {}
    for key, value in config.items():
        ns, _, name = key.partition(":")
        if ns == NAMESPACE and name:
            raw[name] = value
        elif not name:
            raise ConfigError([f"{key}: config keys take a namespace, e.g. {NAMESPACE}:{key}"])
    return raw


def load_stack_file(root: Path, stack: str) -> Spec:
    return load(raw_from_stack_file(Path(root) / f"Pulumi.{stack}.yaml"), stack)



def load_or_say(stack: str, root: Path = Path(".")) -> Spec | None:
    """The stack's spec, or None with every problem printed to stderr (for
    the make targets: the problem and what to do, no traceback)."""
    try:
        return load_stack_file(root, stack)
    except ConfigError as err:
        print(f"{stack}: {err}", file=sys.stderr)
        return None
