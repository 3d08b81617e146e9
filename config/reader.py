"""Strict reading of raw stack config: every value is read through a `Section`,
which knows its key path, refuses unknown keys and names the path in errors."""
from __future__ import annotations

import contextlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")

_MISSING = object()


@dataclass(frozen=True)
class KeyFact:
    """One key as the parser reads it: what it takes, its default and limits.
    The config reference (config/docs.py) is rendered from these."""
    path: str                           # hakube:nodes.etcd.count
    kind: str                           # a whole number, a string, a mapping, ...
    default: Any = None                 # None: no default
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()


_RECORDING: list[dict[str, KeyFact]] = []


@contextlib.contextmanager
def recording() -> Iterator[dict[str, KeyFact]]:
    """Every key the parser reads meanwhile, by path, as it read it last."""
    facts: dict[str, KeyFact] = {}
    _RECORDING.append(facts)
    try:
        yield facts
    finally:
        _RECORDING.remove(facts)


def _note(path: str, kind: str, default: Any, **limits: Any) -> None:
    for facts in _RECORDING:
        facts[path] = KeyFact(path, kind, None if default is _MISSING else default, **limits)


class ConfigError(ValueError):
    """One or more problems in the stack config; each line names a key path."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__(
            "invalid stack config:\n" + "\n".join(f"  - {p}" for p in self.problems)
        )


class Problems:
    """Collects every problem instead of stopping at the first, so one
    `pulumi preview` shows the user all they have to fix."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError(self.items)


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "a mapping", type(None): "empty"}.get(type(value), type(value).__name__)


class Section:
    """A mapping at `path` (e.g. `hakube:nodes.etcd`) read key by key."""

    def __init__(self, path: str, raw: Any, problems: Problems, sep: str = "."):
        self.path = path
        self.sep = sep                  # ":" at the top: `hakube:nodes`, then `.etcd`
        self.problems = problems
        self.seen: set[str] = set()
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            problems.add(path, f"expected a mapping, got {_type_name(raw)}")
            raw = {}
        self.raw: dict[str, Any] = raw

    def key(self, name: str) -> str:
        return f"{self.path}{self.sep}{name}"

    def has(self, name: str) -> bool:
        return name in self.raw

    def _get(self, name: str, default: Any) -> Any:
        self.seen.add(name)
        return self.raw.get(name, default)

    def _typed(self, name: str, default: Any, kind: type | tuple, what: str) -> Any:
        _note(self.key(name), what, default)
        value = self._get(name, _MISSING)
        if value is _MISSING:
            return default
        # bool is an int subclass; a YAML `true` is never a valid count.
        if isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, (int, float))):
            return value
        hint = ""
        if what == "a string" and isinstance(value, float):
            hint = f" (YAML read {value!r} as a number: quote it)"
        self.problems.add(self.key(name), f"expected {what}, got {_type_name(value)}{hint}")
        return default

    def string(self, name: str, default: Any = None) -> Any:
        return self._typed(name, default, str, "a string")

    def boolean(self, name: str, default: bool) -> bool:
        return self._typed(name, default, bool, "a boolean (true or false)")

    def integer(self, name: str, default: Any, minimum: int | None = None,
                maximum: int | None = None, why: str = "") -> Any:
        value = self._typed(name, default, int, "a whole number")
        _note(self.key(name), "a whole number", default, minimum=minimum, maximum=maximum)
        why = f" ({why})" if why else ""
        if isinstance(value, int) and value is not default:
            if minimum is not None and value < minimum:
                self.problems.add(self.key(name), f"must be at least {minimum}{why}, got {value}")
            if maximum is not None and value > maximum:
                self.problems.add(self.key(name), f"must be at most {maximum}{why}, got {value}")
        return value

    def choice(self, name: str, default: str, choices: Iterable[str]) -> str:
        choices = list(choices)
        value = self.string(name, default)
        _note(self.key(name), "one of", default, choices=tuple(choices))
        if value not in choices:
            self.problems.add(self.key(name), f"must be one of {', '.join(choices)}; got {value!r}")
            return default
        return value

    def string_list(self, name: str, default: list[str] | None = None) -> list[str] | None:
        _note(self.key(name), "a list of strings", default)
        value = self._get(name, _MISSING)
        if value is _MISSING:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problems.add(self.key(name), "expected a list of strings")
            return default
        return value

    def mapping(self, name: str) -> Any:
        """A key whose value is a free mapping (another tool's options),
        as written: the caller checks it."""
        _note(self.key(name), "a mapping of options", None)
        return self._get(name, None)

    def section(self, name: str) -> "Section":
        _note(self.key(name), "a mapping", None)
        return Section(self.key(name), self._get(name, None), self.problems)

    def converted(self, name: str, default: Any, convert: Callable[[str], T], what: str) -> T | Any:
        value = self.string(name, _MISSING)
        _note(self.key(name), what, default)
        if value is _MISSING or value is None:
            return default
        try:
            return convert(value)
        except ValueError as exc:
            self.problems.add(self.key(name), f"{value!r} is not {what} ({exc})")
            return default

    def finish(self) -> None:
        """Refuse keys nobody read: a typo must not be silently ignored."""
        for name in sorted(set(self.raw) - self.seen):
            known = ", ".join(sorted(self.seen)) or "none"
            self.problems.add(self.key(name), f"unknown key (known keys here: {known})")


HOSTNAME_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
SEMVER = re.compile(r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


def parse_version(text: str) -> tuple[int, int, int]:
    m = SEMVER.match(text)
    if not m:
        raise ValueError("expected MAJOR.MINOR.PATCH, e.g. 1.33.5")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def parse_ipv4(text: str) -> ipaddress.IPv4Address:
    addr = ipaddress.ip_address(text)
    if addr.version != 4:
        raise ValueError("only IPv4 is supported")
    return addr


def parse_ipv4_network(text: str) -> ipaddress.IPv4Network:
    net = ipaddress.ip_network(text, strict=True)
    if net.version != 4:
        raise ValueError("only IPv4 is supported")
    return net


def systemd_calendar(s: Section, default: str) -> str:
    """A section's `calendar` key: a systemd calendar expression."""
    value = s.string("calendar", default)
    # The members' own `systemd-analyze calendar` judges the expression; here
    # only what would break the unit file itself.
    if isinstance(value, str) and (not value.strip() or "\n" in value or "%" in value):
        s.problems.add(s.key("calendar"), f"{value!r} is not a systemd calendar expression "
                       "(e.g. daily, hourly, *-*-* 00/6:00:00; see man systemd.time)")
    return value
