"""Chain parameters as proposals (issue 14): a `spec.parameters` value that differs from the
chain's becomes a SetParam the organisations decide like a membership change — proposed and
voted by `approve: auto` organisations with their own keys, left WaitingForApprovals for
`manual` ones, shown in status.proposals — and nothing is asked while the spec equals the
chain or no node reports the chain's parameters. On a legacy chain it is a direct SetParam.

Worlds are test_operator_governance's: three organisations a, b, c on a raft chain."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from consortium_api.v1 import types_pb2
from consortium_node.client.gov import gov_action
from consortium_node.provision import genesis as provision_genesis
from consortium_operator import nodes, plan, reconcile, status
from consortium_operator.model import ConsortiumSpec, Observed, SpecError

from tests.unit.operator.test_operator_governance import (
    KEYS,
    NOW,
    OWNER,
    PUBLIC,
    SETTINGS,
    GovChain,
    OrgKube,
    governed,
    next_action,
    proposal,
)
from tests.unit.operator.test_operator_plan import IMAGE, N

pytestmark = pytest.mark.unit

DEFAULTS = {"max_block_txs": 2000, "max_tx_bytes": 131072}
SET = plan.SetParam("max_block_txs", 500)
SET_KEY = ("set_param", "max_block_txs=500")


def raw(approve: dict[str, str] | None = None, parameters: dict[str, int] | None = None) -> Any:
    """a, b, c with one validator each, all running: only parameters can differ."""
    return {
        "chainId": "test",
        "consensus": {"type": "raft"},
        "organizations": [
            {"name": o, "validators": 1, "approve": (approve or {}).get(o, "auto")}
            for o in ("a", "b", "c")
        ],
        "security": {"tls": False},
        "parameters": {"maxBlockTxs": 500} if parameters is None else parameters,
    }


def world(sp: ConsortiumSpec, params: dict[str, int] | None = DEFAULTS, **kw: Any) -> Observed:
    o = governed(
        sp, replicas={"a": 1, "b": 1, "c": 1}, validators={"c-a-0", "c-b-0", "c-c-0"}, **kw
    )
    return replace(o, chain_params=params)


# --------------------------------------------------------------------------- planner


def test_a_parameter_change_is_proposed_by_the_first_auto_member() -> None:
    sp = ConsortiumSpec.parse(raw())
    step = plan.next_step(sp, world(sp), N, IMAGE)
    assert step.action == plan.Propose(SET, "a") and step.phase == "Configuring"
    assert str(step.action) == "propose to set max_block_txs to 500 (as a)"
    # a manual first organisation: the next auto one proposes
    sp = ConsortiumSpec.parse(raw({"a": "manual"}))
    assert next_action(sp, world(sp)) == plan.Propose(SET, "b")


def test_the_chain_already_has_it_or_the_spec_asks_nothing_converges() -> None:
    sp = ConsortiumSpec.parse(raw())
    assert next_action(sp, world(sp, {**DEFAULTS, "max_block_txs": 500})) == plan.Converged()
    none = ConsortiumSpec.parse(raw(parameters={}))
    assert next_action(none, world(none, None)) == plan.Converged()  # not even asked


def test_parameters_unknown_means_wait_not_propose() -> None:
    sp = ConsortiumSpec.parse(raw())
    a = next_action(sp, world(sp, None))
    assert a == plan.Wait("WaitingForNodes", "waiting for a node to report the chain's parameters")


def test_one_parameter_per_pass_in_name_order() -> None:
    sp = ConsortiumSpec.parse(raw(parameters={"maxTxBytes": 4096, "maxBlockTxs": 500}))
    assert next_action(sp, world(sp)) == plan.Propose(SET, "a")
    done = world(sp, {**DEFAULTS, "max_block_txs": 500})
    assert next_action(sp, done) == plan.Propose(plan.SetParam("max_tx_bytes", 4096), "a")


def test_pending_proposal_gets_auto_votes_then_waits_for_manual_ones() -> None:
    sp = ConsortiumSpec.parse(raw({"c": "manual"}))
    o = world(sp, proposals=(proposal(change=SET_KEY, needed=2),))
    assert next_action(sp, o) == plan.Vote(7, "b", SET)
    sp = ConsortiumSpec.parse(raw({"b": "manual", "c": "manual"}))
    o = world(sp, proposals=(proposal(change=SET_KEY, needed=2),))
    step = plan.next_step(sp, o, N, IMAGE)
    assert step.phase == "Configuring"
    assert step.action == plan.Wait(
        "WaitingForApprovals",
        "proposal 7 to set max_block_txs to 500: 1/3, need 2; waiting for b, c",
    )
    # status: the condition and the open proposal (what it does, its tally, who is awaited)
    ctx = status.Context(N, "ns", 1, [], "2026-01-01T00:00:00Z", 2)
    st = status.build(sp, o, step, ctx)
    cond = {c["type"]: c for c in st["conditions"]}["WaitingForApprovals"]
    assert cond["status"] == "True" and "need 2; waiting for b, c" in cond["message"]
    assert [(p["id"], p["action"], p["waitingFor"]) for p in st["proposals"]] == [
        (7, "set_param", ["b", "c"])
    ]


def test_a_rejected_parameter_proposal_blocks_until_the_spec_changes() -> None:
    sp = ConsortiumSpec.parse(raw())
    o = world(sp, proposals=(proposal(state="REJECTED", change=SET_KEY),))
    a = next_action(sp, o)
    assert isinstance(a, plan.Blocked) and a.reason == "ProposalRefused"
    # a different value is a different proposal
    other = ConsortiumSpec.parse(raw(parameters={"maxBlockTxs": 600}))
    assert next_action(other, o) == plan.Propose(plan.SetParam("max_block_txs", 600), "a")


def test_on_a_legacy_chain_it_is_a_direct_set_param() -> None:
    sp = ConsortiumSpec.parse(raw())
    legacy = replace(world(sp), org_governance=False, admin_public=b"\x09" * 32)
    assert next_action(sp, legacy) == SET


# --------------------------------------------------------------------------- the wire


def test_proposal_view_and_payload_of_a_set_param() -> None:
    payload = nodes.change_payload(SET)
    assert payload == types_pb2.SetParam(name="max_block_txs", value="500")
    p = types_pb2.Proposal(
        id=3, action="set_param", action_bytes=gov_action(payload).SerializeToString()
    )
    assert nodes.proposal_view(p).change == plan.change_key(SET) == SET_KEY


def test_spec_parameters_are_validated_and_seed_a_new_genesis() -> None:
    with pytest.raises(SpecError, match=r"spec.parameters.maxTxBytes must be in 1024\.\."):
        ConsortiumSpec.parse(raw(parameters={"maxTxBytes": 10}))
    sp = ConsortiumSpec.parse(raw(parameters={"maxTxBytes": 4096}))
    assert sp.genesis_params() == {"max_block_txs": 2000, "max_tx_bytes": 4096}
    assert ConsortiumSpec.parse(raw(parameters={})).genesis_params() == DEFAULTS
    members = provision_genesis.initial_members(sp, lambda org, i: f"{org}-{i}")
    keys = provision_genesis.GenesisKeys(
        validators={m: bytes([i + 1]) * 32 for i, (m, _) in enumerate(members)},
        admin=b"\x09" * 32,
    )
    g = provision_genesis.build(sp, lambda org, i: f"{org}-{i}", keys, 0)
    assert g.params == {"max_block_txs": 2000, "max_tx_bytes": 4096}


# --------------------------------------------------------------------------- reconcile


class ParamChain(GovChain):
    """GovChain with three running validators and the chain's parameters; an executed
    SetParam proposal changes them."""

    def __init__(self) -> None:
        super().__init__()
        self.validators = ["c-a-0", "c-b-0", "c-c-0"]
        self.params = dict(DEFAULTS)

    async def chain_params(self, *_: Any) -> dict[str, int]:
        return dict(self.params)

    async def governance(self, eps: Any, chain_id: str, text: str, action: Any, *a: Any) -> str:
        out = await super().governance(eps, chain_id, text, action, *a)
        p = self.proposals[-1]
        if isinstance(action, plan.Propose):
            self.proposals[-1] = replace(p, change=plan.change_key(action.change))
        elif isinstance(action, plan.Vote) and p.state == "EXECUTED":
            assert isinstance(action.change, plan.SetParam)
            self.params[action.change.name] = action.change.value
        return out

    def vote(self, pid: int, org: str) -> None:
        change = self.proposals[pid - 1].change
        super().vote(pid, org)
        self.proposals[pid - 1] = replace(self.proposals[pid - 1], change=change)


@pytest.fixture
def pchain(monkeypatch: pytest.MonkeyPatch) -> ParamChain:
    c = ParamChain()
    monkeypatch.setattr(nodes, "statuses", c.statuses)
    monkeypatch.setattr(nodes, "proposals", c.list)
    monkeypatch.setattr(nodes, "governance", c.governance)
    monkeypatch.setattr(nodes, "chain_params", c.chain_params)
    return c


def test_reconcile_proposes_votes_and_converges_on_the_new_value(pchain: ParamChain) -> None:
    sp = ConsortiumSpec.parse(raw())
    kube = OrgKube(replace(world(sp, None), org_admins=PUBLIC, nodes={}, proposals=None), KEYS)
    env = reconcile.Env(SETTINGS, kube, clock=lambda: NOW)
    got: list[tuple[str, str]] = []
    ev = reconcile.Events(lambda r, m: got.append((r, m)), lambda r, m: got.append((r, m)))

    def run() -> reconcile.Outcome:
        st = kube.statuses[-1] if kube.statuses else {}
        subject = reconcile.Subject(OWNER, raw(), status=dict(st), generation=1)
        return asyncio.run(reconcile.reconcile(env, subject, ev))

    assert run().message == "propose to set max_block_txs to 500 (as a)"
    assert run().message == "vote yes on proposal 1 (set max_block_txs to 500) as b"
    assert [(pchain.org_of(k), type(a).__name__) for k, a in pchain.signed] == [
        ("a", "Propose"),
        ("b", "Vote"),
    ]
    assert pchain.params["max_block_txs"] == 500
    out = run()
    assert out.requeue is None and out.message == "converged" and len(pchain.signed) == 2
    # an event on each step: submitted, the phase, voted, then the proposal's own lifecycle
    assert [r for r, _ in got] == [
        "ProposalSubmitted",
        "PhaseConfiguring",
        "ProposalVoted",
        "ProposalOpened",
        "ProposalClosed",
        "PhaseRunning",
    ]
