"""The node's metric labels (metrics.py): a discarded consensus message is counted under a
label with no heights, rounds or sizes in it, so a long-running node's label set stays
bounded whatever its peers send."""

from __future__ import annotations

import pytest
from consortium_node.metrics import rejection_label

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("double prevote at 3/2: 1a2b3c4d and 5e6f7a8b", "double prevote at #/#"),
        ("double prevote at 1093/0: 00000000 and 5e6f7a8b", "double prevote at #/#"),
        ("proposal for 12/4 from non-proposer", "proposal for #/# from non-proposer"),
        ("tx response does not match: index 3 of 7/0", "tx response does not match"),
        ("bft vote must be 142 bytes, got 13", "bft vote must be # bytes, got #"),
        ("dropped: too many conflicting votes at 5/1", "dropped"),
    ],
)
def test_a_rejection_label_names_no_numbers(reason: str, label: str) -> None:
    assert rejection_label(reason) == label
