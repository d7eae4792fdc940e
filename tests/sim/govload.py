"""The governance workload of the whole-node simulator (tests/sim/nodesim.py; issue 14):
organisation admins proposing, voting, withdrawing and letting proposals expire, under the
simulator's faults, and the governance invariants checked at the end.

Used by NodeSim when its swarm draws `governance`: the genesis then lists one organisation per
genesis validator (org0..org{n-1}), each with one admin key (governance by organisations, no
consortium admin), and the seed's validator changes (the joiner's AddValidator, the victim's
RemoveValidator) are proposals too — opened by the organisation they concern, carried by the
other organisations' yes votes. Besides those, each organisation's admin, at random ticks and
reading the committed state of an honest node: votes yes on the seed's validator change if it
has not yet, else yes or no on an open proposal it has not voted on, withdraws one of its own
SetParam proposals (not one about to expire), or opens a SetParam(max_block_txs)
with a TTL of 2..80 blocks (short ones expire). Each admin has at most one transaction in
flight and takes its nonce from committed state; a transaction the chain refuses (the
proposal closed meanwhile, a lost pool) is abandoned after RESUBMIT_TICKS, not retried — so
governance transactions are outside the simulator's liveness rule, while every node's state
(proposals and votes included, all under the state root) must still agree at every height.

Invariants at the end, on every honest node, from an independent model of the rules
(ledger/governance.py is what they check, so they do not call it):
  one vote      no organisation appears twice among a proposal's votes; voters are members
  policy        an EXECUTED proposal under ANY / MAJORITY / ALL / SELF had the yes votes the
                rule needs (MAJORITY: strictly more than half of its member organisations)
  expiry        an EXPIRED proposal closed at exactly its expiry height; no vote counted at or
                after it
  terminal      a closed proposal closed at or after the height that opened it"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from consortium_api.v1 import types_pb2
from consortium_node import crypto
from consortium_node.client.gov import gov_action
from consortium_node.ledger import governance as gov
from consortium_node.ledger.genesis import Organization
from consortium_node.ledger.state import get_proposal, nonce_key, u64
from consortium_node.transport import codec

from tests.support.engines import SafetyViolation

if TYPE_CHECKING:
    from .nodesim import NodeSim, SimNode

GOV_RATE = 0.05  # per tick: the chance that one organisation's admin acts
RESUBMIT_TICKS = 60  # as nodesim: a transaction not committed by then is abandoned
MEMBERSHIP_TTL = 400  # blocks: the joiner's and the victim's proposals
MAX_OPEN = 4  # an admin opens a SetParam only while fewer proposals are open
TTLS = (2, 5, 20, 80)


@dataclass
class Admin:
    org: str
    key: crypto.Ed25519Key
    in_flight: tuple[int, bytes] | None = None  # (tick sent, tx id)


@dataclass
class GovernanceLoad:
    """`rng` is the workload's own stream (`gov:<seed>`): the simulator's stream, which draws
    the seed's faults, is not consumed by it."""

    sim: NodeSim
    admins: dict[str, Admin]
    rng: random.Random
    stats: dict[str, int] = field(default_factory=dict)

    @classmethod
    def create(cls, sim: NodeSim, orgs: Sequence[str]) -> GovernanceLoad:
        rng = random.Random(f"gov:{sim.seed}")
        return cls(sim, {o: Admin(o, crypto.Ed25519Key(rng.randbytes(32))) for o in orgs}, rng)

    def organizations(self) -> tuple[Organization, ...]:
        """The genesis organisations, each with its admin key."""
        return tuple(Organization(o, admins=(a.key.public,)) for o, a in self.admins.items())

    def _count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    # ------------------------------------------------------------------ submission

    def _reference(self) -> SimNode | None:
        up = [sn for sn in self.sim._up_honest() if sn.node is not None]
        return max(up, key=lambda sn: sn.node.height if sn.node else 0) if up else None

    def _busy(self, a: Admin, ref: SimNode) -> bool:
        if a.in_flight is None:
            return False
        sent, tid = a.in_flight
        assert ref.node is not None
        if ref.node.receipt(tid) is not None or self.sim.now - sent > RESUBMIT_TICKS:
            a.in_flight = None  # committed, or abandoned (the chain refused it, a pool lost it)
            return False
        return True

    def send(self, a: Admin, what: str, **payload: object) -> None:
        """One governance transaction of `a`, nonce from the reference node's committed
        state, to one random node that is up."""
        ref = self._reference()
        if ref is None or ref.node is None:
            return
        with ref.node.snapshot() as snap:
            nonce = u64(snap.get(nonce_key(a.key.public)))
        from .nodesim import _signed

        raw = _signed(a.key, self.sim.genesis.chain_id, nonce, **payload)
        a.in_flight = (self.sim.now, codec.decode_tx(raw).id)
        self._count(what)
        self.sim._log(f"{a.org} admin: {what}")
        targets = [sn for sn in self.sim.nodes.values() if sn.node is not None]
        sn = self.rng.choice(targets)
        assert sn.node is not None
        self.sim._call(sn, sn.node.submit_many, [raw])

    def propose(self, org: str, action: object, ttl: int, what: str) -> None:
        body = gov_action(action).SerializeToString()  # type: ignore[arg-type]
        self.send(self.admins[org], what, propose=types_pb2.Propose(action=body, ttl=ttl))

    # ------------------------------------------------------------------ the workload

    def membership(self, what: str, node_id: bytes, org: str) -> None:
        """The seed's planned validator change, proposed by the organisation it concerns."""
        if what == "add":
            action: object = types_pb2.AddValidator(node_id=node_id, organization=org)
        else:
            action = types_pb2.RemoveValidator(node_id=node_id)
        self.propose(org, action, MEMBERSHIP_TTL, f"propose {what} validator")

    def tick(self) -> None:
        if self.rng.random() >= GOV_RATE:
            return
        a = self.admins[self.rng.choice(sorted(self.admins))]
        ref = self._reference()
        if ref is None or ref.node is None or self._busy(a, ref):
            return
        with ref.node.snapshot() as snap:
            open_ids = gov.decode_ids(snap.get(gov.OPEN_PROPOSALS_KEY))
            props = [p for p in (get_proposal(snap, i) for i in open_ids) if p is not None]
        height = ref.node.height
        votable = [p for p in props if a.org in p.members and a.org not in p.vote_map()]
        # the seed's validator changes first: its scenario (a joiner, a victim) goes through
        carried = [p for p in votable if p.action != "set_param"]
        own = [p for p in props if p.proposer == a.org and p.action == "set_param"]
        own = [p for p in own if p.expiry > height + 5]  # (one about to expire: let it)
        r = self.rng.random()
        if carried:
            p = carried[0]
            self.send(a, "vote yes", vote=types_pb2.Vote(proposal=p.id, approve=True))
        elif votable and r < 0.6:
            p = self.rng.choice(votable)
            yes = self.rng.random() < 0.6  # parameters are contested
            what = "vote yes" if yes else "vote no"
            self.send(a, what, vote=types_pb2.Vote(proposal=p.id, approve=yes))
        elif own and r < 0.7:
            self.send(a, "withdraw", withdraw=types_pb2.Withdraw(proposal=self.rng.choice(own).id))
        elif len(props) < MAX_OPEN:
            value = str(self.rng.randint(500, 5000))
            self.propose(
                a.org,
                types_pb2.SetParam(name="max_block_txs", value=value),
                self.rng.choice(TTLS),
                "propose set_param",
            )

    # ------------------------------------------------------------------ invariants

    def check(self, sn: SimNode) -> dict[str, int]:
        """The governance invariants of the module docstring on `sn`'s committed state;
        returns the count of proposals per state."""
        node = sn.node
        assert node is not None
        states: dict[str, int] = {}
        with node.snapshot() as snap:
            last = u64(snap.get(gov.NEXT_PROPOSAL_KEY)) - 1
            for pid in range(1, last + 1):
                p = get_proposal(snap, pid)
                if p is None:
                    raise SafetyViolation(f"{sn.name}: proposal {pid} of 1..{last} is missing")
                states[p.state] = states.get(p.state, 0) + 1
                _check_proposal(sn.name, p)
        return states


def _check_proposal(name: str, p: gov.Proposal) -> None:
    where = f"{name}: proposal {p.id} ({p.action}, {p.state})"
    orgs = [v.organization for v in p.votes]
    if len(set(orgs)) != len(orgs):
        raise SafetyViolation(f"{where}: an organisation voted twice: {orgs}")
    if any(o not in p.members for o in orgs):
        raise SafetyViolation(f"{where}: a vote from outside its members {p.members}: {orgs}")
    yes = sum(1 for v in p.votes if v.approve)
    n = len(p.members)
    needed = {"ANY": 1, "MAJORITY": n // 2 + 1, "ALL": n}.get(p.rule)
    if p.rule == "SELF":
        needed = 1 if any(v.approve and v.organization == p.subject for v in p.votes) else n + 1
    if p.state == gov.EXECUTED and needed is not None and yes < needed:
        raise SafetyViolation(f"{where}: executed with {yes} yes of {n} under {p.rule}")
    if p.state == gov.EXPIRED and p.closed != p.expiry:
        raise SafetyViolation(f"{where}: expired at {p.closed}, its expiry is {p.expiry}")
    if any(v.height >= p.expiry for v in p.votes):
        raise SafetyViolation(f"{where}: a vote counted at or after its expiry {p.expiry}")
    if p.state != gov.PENDING and p.closed < p.created:
        raise SafetyViolation(f"{where}: closed at {p.closed} before it opened at {p.created}")
