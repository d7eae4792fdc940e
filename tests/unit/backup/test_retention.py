"""Retention of scheduled backups (backup/retention.py): which to delete, as a pure function."""

from __future__ import annotations

import random

import pytest
from consortium_node.backup.retention import Held, to_prune

A, B = b"a" * 32, b"b" * 32


def test_keeps_the_newest_by_height_and_deletes_the_rest_oldest_first() -> None:
    held = [Held(f"a{h}", A, h, 1000 + h) for h in (5, 1, 9, 3, 7)]
    assert to_prune(held, A, 2) == ["a1", "a3", "a5"]


def test_another_chains_backups_in_the_same_directory_are_never_touched() -> None:
    held = [Held("a1", A, 1, 1), Held("b1", B, 1, 1), Held("b2", B, 2, 2), Held("a2", A, 2, 2)]
    assert to_prune(held, A, 1) == ["a1"]


def test_the_backup_just_made_is_kept_even_when_older_ones_have_a_greater_height() -> None:
    # a restored chain may be exported at a height below an older backup's
    held = [Held("old", A, 50, 1), Held("new", A, 10, 2)]
    assert to_prune(held, A, 1, protect="new") == []


def test_equal_heights_order_by_creation_then_name() -> None:
    held = [Held("x", A, 4, 2), Held("y", A, 4, 1), Held("z", A, 4, 2)]
    assert to_prune(held, A, 1) == ["y", "x"]


def test_keeping_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        to_prune([Held("a", A, 1, 1)], A, 0)


def test_property_exactly_the_newest_keep_remain_and_nothing_else_is_lost() -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    for _ in range(300):
        held = [
            Held(f"n{i}", rng.choice((A, B)), rng.randrange(20), rng.randrange(5))
            for i in range(rng.randrange(12))
        ]
        keep = rng.randrange(1, 5)
        gone = set(to_prune(held, A, keep))
        mine = [h for h in held if h.genesis_hash == A]
        assert gone <= {h.name for h in mine}, f"seed {seed}: another chain's backup deleted"
        assert len(mine) - len(gone) == min(keep, len(mine)), f"seed {seed}"
        kept = [h for h in mine if h.name not in gone]
        for h in mine:
            if h.name in gone:
                assert all(
                    (h.height, h.created_unix, h.name) < (k.height, k.created_unix, k.name)
                    for k in kept
                ), f"seed {seed}: {h} deleted while an older one was kept"
