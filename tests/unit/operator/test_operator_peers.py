"""status.remotePeers and the PeerUnreachable condition (issue 15, federation): for each
validator of each remote organisation, whether any answering node of this cluster has a live
peer link to it (GetStatus.peers), and a condition that says which ones no node has reached —
only after the link has been down PEER_GRACE_S on every answering node (a link that flaps
faster is not reported), never while no node answers, and never at the cost of Ready.

Organisation a (2 validators) is local, b (2) and c (1) are remote."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import yaml
from consortium_operator import plan, status
from consortium_operator.model import (
    ConsortiumSpec,
    Names,
    NodeStatus,
    Observed,
    PeerLinkView,
    PodState,
)

from tests.unit.operator.test_operator_crd import CRD_FILE, _fits

pytestmark = pytest.mark.unit

N = Names("c")
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
LOCAL = {N.pod("a", i): bytes([0xA0 + i]) * 32 for i in range(2)}
REMOTE = {("b", 0): b"\xb0" * 32, ("b", 1): b"\xb1" * 32, ("c", 0): b"\xc0" * 32}
ADDRESS = {("b", 0): "b0.example:30751", ("b", 1): "b1.example:30752", ("c", 0): "c0.example:1"}
REFUSED = "UNAVAILABLE: failed to connect to all addresses; last error: Connection refused"
GRACE = status.PEER_GRACE_S


def _remote(org: str, n: int) -> dict[str, Any]:
    return {
        "caCert": CA,
        "admins": [(org * 2) * 32],
        "validators": [
            {"name": f"{org}-{i}", "nodeId": REMOTE[org, i].hex(), "address": ADDRESS[org, i]}
            for i in range(n)
        ],
    }


SPEC = ConsortiumSpec.parse(
    {
        "chainId": "fed",
        "consensus": {"type": "raft"},
        "localOrganizations": ["a"],
        "ceremony": {"configMap": "fed-ceremony"},
        "organizations": [
            {"name": "a", "validators": 2},
            {"name": "b", "validators": 2, "remote": _remote("b", 2)},
            {"name": "c", "validators": 1, "remote": _remote("c", 1)},
        ],
    }
)


def up(org: str, i: int, since: float = 100.0) -> PeerLinkView:
    return PeerLinkView(REMOTE[org, i], ADDRESS[org, i], True, "", since)


def down(org: str, i: int, since: float, error: str = REFUSED) -> PeerLinkView:
    return PeerLinkView(REMOTE[org, i], ADDRESS[org, i], False, error, since)


def world(links: Mapping[str, tuple[PeerLinkView, ...]]) -> Observed:
    """Both local pods ready; the pods in `links` answer GetStatus with those peer links."""
    vset = tuple((k, "a") for k in LOCAL.values()) + tuple(
        (k, org) for (org, _), k in REMOTE.items()
    )
    return Observed(
        node_keys=LOCAL,
        genesis_validators=vset,
        genesis_hash="ab" * 32,
        pods={p: PodState(p, "a", i, True, "r1", "10.0.0.1") for i, p in enumerate(LOCAL)},
        nodes={
            p: NodeStatus(
                7, "follower", LOCAL[N.pod("a", 0)], vset, "synced", "fed", ("a", "b"), peers
            )
            for p, peers in links.items()
        },
    )


def build(obs: Observed, spec: ConsortiumSpec = SPEC) -> dict[str, Any]:
    ctx = status.Context(N, "ns", 3, [], "2026-01-01T00:00:00Z", 2)
    return status.build(spec, obs, plan.Step(plan.Converged(), {}, "Running"), ctx)


def conditions(st: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in st["conditions"]}


P0, P1 = N.pod("a", 0), N.pod("a", 1)
ALL_UP = (up("b", 0), up("b", 1), up("c", 0))


def test_every_remote_validator_connected() -> None:
    st = build(world({P0: ALL_UP, P1: ALL_UP}))
    assert st["remotePeers"] == [
        {
            "organization": org,
            "name": f"{org}-{i}",
            "nodeId": REMOTE[org, i].hex(),
            "address": ADDRESS[org, i],
            "connected": True,
            "error": "",
        }
        for org, i in REMOTE
    ]
    assert conditions(st)["PeerUnreachable"] == (
        "False",
        "AllPeersReachable",
        "all 3 remote validators connected",
    )


def test_one_connected_node_is_enough() -> None:
    """Only the smaller node id dials: one local node's live link to a peer is a reach."""
    st = build(world({P0: (down("b", 0, 500), up("b", 1), up("c", 0)), P1: ALL_UP}))
    assert all(p["connected"] for p in st["remotePeers"])
    assert conditions(st)["PeerUnreachable"][1] == "AllPeersReachable"


def test_unreachable_after_the_grace_on_every_node_and_ready_unchanged() -> None:
    why_p1 = "not connected yet: the peer dials this node (it has the smaller node id)"
    links = {
        P0: (down("b", 0, GRACE + 40), up("b", 1), up("c", 0)),
        P1: (down("b", 0, GRACE + 5, why_p1), up("b", 1), up("c", 0)),
    }
    st = build(world(links))
    b0 = st["remotePeers"][0]
    # the most recent change of state (P1's, 35 s ago) gives the reason
    assert (b0["connected"], b0["error"]) == (False, why_p1)
    cond = conditions(st)
    assert cond["PeerUnreachable"] == (
        "True",
        "PeerUnreachable",
        f"1 of 3 remote validators not reached for 30 s or more: "
        f"b/b-0 at b0.example:30751: {why_p1}",
    )
    # informative only: our own nodes serve, so the Consortium stays Ready and Running
    assert cond["Ready"][:2] == ("True", "ChainReady")
    assert cond["Degraded"][0] == "False" and st["phase"] == "Running"
    assert st["message"].endswith("; remote validators unreachable: b/b-0")


def test_a_link_down_under_the_grace_is_not_reported() -> None:
    """A flapping link (down 12 s on one node, long on the other) is not yet unreachable."""
    links = {
        P0: (down("b", 0, GRACE + 300), up("b", 1), down("c", 0, 5)),
        P1: (down("b", 0, 12.0), up("b", 1), down("c", 0, 7)),
    }
    st = build(world(links))
    assert [p["connected"] for p in st["remotePeers"]] == [False, True, False]
    assert st["remotePeers"][0]["error"] == REFUSED
    assert conditions(st)["PeerUnreachable"] == (
        "False",
        "PeersConnecting",
        "not connected for less than 30 s: b/b-0, c/c-0",
    )
    assert "unreachable" not in st["message"]


def test_the_condition_keeps_its_transition_time_while_a_link_flaps() -> None:
    """Down past the grace, then back for a moment, then down again (7 s ago): the condition
    goes False at once (a link is up again) and is not True again before the grace."""
    ctx = status.Context(N, "ns", 3, [], "2026-01-01T00:00:00Z", 2)
    step = plan.Step(plan.Converged(), {}, "Running")
    first = status.build(SPEC, world({P0: (down("b", 0, 90), up("b", 1), up("c", 0))}), step, ctx)
    again = status.Context(N, "ns", 3, first["conditions"], "2026-01-01T00:01:00Z", 2)
    flap = world({P0: (down("b", 0, 7), up("b", 1), up("c", 0))})
    second = status.build(SPEC, flap, step, again)
    c1 = {c["type"]: c for c in first["conditions"]}["PeerUnreachable"]
    c2 = {c["type"]: c for c in second["conditions"]}["PeerUnreachable"]
    assert (c1["status"], c2["status"], c2["reason"]) == ("True", "False", "PeersConnecting")
    assert c2["lastTransitionTime"] == "2026-01-01T00:01:00Z"


def test_no_node_answering_is_not_unreachable() -> None:
    st = build(world({}))
    assert conditions(st)["PeerUnreachable"][:2] == ("Unknown", "NoNodeAnswers")
    assert [p["error"] for p in st["remotePeers"]] == [status.NO_ANSWER] * 3
    assert not any(p.unreachable for p in status.remote_peers(SPEC, world({})))


def test_nodes_that_report_no_links_at_all_leave_it_unknown() -> None:
    """Nodes of a version before GetStatus.peers answer with no links: unknown, not down."""
    st = build(world({P0: (), P1: ()}))
    assert conditions(st)["PeerUnreachable"][:2] == ("Unknown", "PeerLinksUnknown")


def test_a_remote_validator_no_node_has_a_link_to() -> None:
    """The nodes report links, but none to c-0 (their peer list lacks it): unreachable."""
    st = build(world({P0: (up("b", 0), up("b", 1)), P1: (up("b", 0), up("b", 1))}))
    assert st["remotePeers"][2]["error"] == status.NO_LINK
    cond = conditions(st)["PeerUnreachable"]
    assert cond[0] == "True" and f"c/c-0 at c0.example:1: {status.NO_LINK}" in cond[2]


def test_a_spec_without_remote_organisations_has_no_such_condition() -> None:
    plain = ConsortiumSpec.parse(
        {
            "chainId": "x",
            "consensus": {"type": "raft"},
            "organizations": [{"name": "a", "validators": 2}],
        }
    )
    st = build(world({P0: (), P1: ()}), plain)
    assert "PeerUnreachable" not in conditions(st) and st["remotePeers"] == []


def test_remote_peers_and_the_condition_fit_the_crd_schema() -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    (version,) = crd["spec"]["versions"]
    props = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    st = build(world({P0: (down("b", 0, 90), up("b", 1), up("c", 0))}))
    _fits(st, {"type": "object", "properties": props}, "status")
    assert "PeerUnreachable" in props["conditions"]["description"]
