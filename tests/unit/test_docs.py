"""The stack config reference (config/docs.py): its two copies are what
`make docs` renders, every key the parser reads has words and every key with
words is read, and the limits the reference shows are the ones the parser
enforces."""
from __future__ import annotations

import copy

import pytest

from config import docs, spec
from config.reader import ConfigError
from ops import docs as ops_docs


def test_the_generated_pages_are_what_make_docs_renders():
    assert ops_docs.write(check=True) == [], "run make docs"


def test_every_key_the_parser_reads_is_documented_and_every_documented_key_is_read():
    assert docs.undocumented() == []
    assert [r.key for r in docs.rows()] == list(docs.KEYS)     # rows() refuses a key nobody reads
    assert set(docs.SECRETS) == set(spec.SECRET_KEYS)


def _set(raw: dict, path: str, value) -> dict:
    raw = copy.deepcopy(raw)
    *parents, last = path.split(".")
    node = raw
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return raw


def _problems(raw: dict) -> list[str]:
    try:
        spec.load(raw, stack="dev")
    except ConfigError as err:
        return err.problems
    return []


# limits that hold against another key: the value the other key must have
# for this one's own limit to be reachable (None: it is not)
AGAINST = {"etcd.electionTimeoutMs": ("etcd.heartbeatIntervalMs", 10),    # at least 5 heartbeats
           "pki.earlyRenewalHours": None}                                # below validityHours, whose max is its own
LIMITED = [(path, f) for path, f in docs.facts(docs.REACH_ALL).items() if f.minimum is not None or f.choices]


@pytest.mark.parametrize("path,fact", LIMITED, ids=[p for p, _ in LIMITED])
def test_the_limits_the_reference_shows_are_the_ones_the_parser_enforces(path, fact):
    """Just past a limit is refused, naming the key; the limit itself is not."""
    base = docs.REACH_ALL if path.startswith(("etcd.restore", "etcd.recover", "etcd.backup.offsite")) \
        else docs.DEFAULTS
    key = f"hakube:{path}"
    if fact.choices:
        assert any(p.startswith(key + ":") for p in _problems(_set(base, path, "no-such-choice")))
        ok = [c for c in fact.choices]
    else:
        bad = [fact.minimum - 1] + ([fact.maximum + 1] if fact.maximum is not None else [])
        for value in bad:
            assert any(p.startswith(key + ":") for p in _problems(_set(base, path, value))), (path, value)
        ok = [fact.minimum] + ([fact.maximum] if fact.maximum is not None and AGAINST.get(path, 0) is not None
                               else [])
        if AGAINST.get(path):
            base = _set(base, *AGAINST[path])
    for value in ok:
        assert not any(p.startswith(key + ":") for p in _problems(_set(base, path, value))), (path, value)
