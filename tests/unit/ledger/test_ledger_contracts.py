"""Contracts in the state machine (ledger/state.py + ledger/contracts.py, issue 16): deploy
and upgrade only through governance (MAJORITY of organisations), Invoke as an ordinary tx,
failed calls keep none of their writes or events but consume their nonce and record fuel,
receipts in state (so equal state roots mean equal receipts), the engine pin, and two
independent engines agreeing on every root.

The chain is execute_block over a dict, the state root re-derived from scratch after every
block (as in test_ledger_governance.py)."""

from __future__ import annotations

import pytest
from consortium_node.contracts import WasmEngine
from consortium_node.ledger import contracts as cx
from consortium_node.ledger import governance as gov
from consortium_node.ledger.errors import TxRejected
from consortium_node.ledger.genesis import Genesis, Organization
from consortium_node.ledger.hashing import sha256
from consortium_node.ledger.lthash import LtHash
from consortium_node.ledger.state import (
    CONTRACT_FAILED,
    INVALID,
    NOT_FOUND,
    OK,
    UNAUTHORIZED,
    BlockResult,
    Validator,
    execute_block,
    get_proposal,
    nonce_key,
    preflight,
    u64,
)
from consortium_node.ledger.tx import (
    DeployContract,
    GovAction,
    Invoke,
    Payload,
    Propose,
    Tx,
    UpgradeContract,
    Vote,
    check_stateless,
)
from consortium_node.transport import codec

from tests.support import wat

pytestmark = pytest.mark.unit

CHAIN = "contracts-test"
ORGS = ("org-a", "org-b", "org-c")
FUEL = 1_000_000


def admin(org: str) -> bytes:
    return sha256(f"admin {org}".encode())


USER = sha256(b"member of org-a")
STRANGER = sha256(b"nobody vouches for me")


def make_tx(sender: bytes, nonce: int, payload: Payload) -> Tx:
    body = repr((CHAIN, sender, nonce, payload)).encode()
    return Tx(sha256(body), body, body, bytes(64), CHAIN, sender, nonce, payload)


def genesis(engine: str = cx.CONTRACTS_ENGINE) -> Genesis:
    return Genesis(
        chain_id=CHAIN,
        time_ms=1,
        validators=tuple(Validator(sha256(o.encode()), o) for o in ORGS),
        consensus="raft",
        organizations=tuple(
            Organization(o, admins=(admin(o),), members=(USER,) if o == "org-a" else ())
            for o in ORGS
        ),
        permissioned=True,
        contracts_engine=engine,
    )


class Chain:
    def __init__(self, g: Genesis, vm: cx.ContractVM | None) -> None:
        self.state = {k: v for k, v in g.writes().items() if v is not None}
        self.acc = g.lthash()
        self.height = 0
        self.vm = vm
        self._nonces: dict[bytes, int] = {}

    def tx(self, sender: bytes, payload: Payload) -> Tx:
        n = self._nonces.get(sender, u64(self.state.get(nonce_key(sender))))
        self._nonces[sender] = n + 1
        return make_tx(sender, n, payload)

    def run(self, *txs: Tx) -> BlockResult:
        self.height += 1
        r = execute_block(self.state, self.acc, self.height, txs, self.vm)
        for k, v in r.writes.items():
            if v is None:
                self.state.pop(k, None)
            else:
                self.state[k] = v
        ref = LtHash()
        for k, v in self.state.items():
            ref.add(k, v)
        assert r.state_root == ref.digest()
        self.acc = LtHash(r.lthash)
        return r

    def send(self, sender: bytes, payload: Payload) -> tuple[int, str, Tx]:
        tx = self.tx(sender, payload)
        (rc,) = self.run(tx).receipts
        return rc.code, rc.message, tx

    def propose(self, org: str, action: GovAction) -> int:
        ab = codec.gov_action_to_pb(action).SerializeToString()
        code, msg, _ = self.send(admin(org), Propose(action, ab, 10))
        assert code == OK, msg
        return u64(self.state[gov.NEXT_PROPOSAL_KEY]) - 1

    def deploy(self, name: str, code: bytes, init_input: bytes = b"") -> gov.Proposal:
        pid = self.propose("org-a", DeployContract(name, code, init_input))
        c, msg, _ = self.send(admin("org-b"), Vote(pid, True))
        assert c == OK, msg
        p = get_proposal(self.state, pid)
        assert p is not None
        return p

    def invoke(
        self,
        method: str,
        data: bytes = b"",
        name: str = "counter",
        fuel: int = FUEL,
        sender: bytes = USER,
    ) -> tuple[int, str, cx.ContractReceipt | None]:
        code, msg, tx = self.send(sender, Invoke(name, method, data, fuel))
        return code, msg, cx.receipt_of(self.state, tx.id)


@pytest.fixture(scope="module")
def vm() -> WasmEngine:
    return WasmEngine()


@pytest.fixture
def chain(vm: WasmEngine) -> Chain:
    c = Chain(genesis(), vm)
    p = c.deploy("counter", wat.counter(), (41).to_bytes(8, "little"))
    assert p.state == gov.EXECUTED, p.reason
    return c


def counter_value(c: Chain) -> int:
    raw = c.state.get(cx.state_key("counter", b"n"))
    return 0 if raw is None else int.from_bytes(raw, "little")


def test_deploy_needs_a_majority_of_organisations(vm: WasmEngine) -> None:
    """deploy_contract is MAJORITY: one of three organisations leaves it pending."""
    c = Chain(genesis(), vm)
    pid = c.propose("org-a", DeployContract("counter", wat.counter()))
    assert get_proposal(c.state, pid).state == gov.PENDING  # type: ignore[union-attr]
    assert cx.contract_info(c.state, "counter") is None
    assert c.invoke("incr")[0] == NOT_FOUND
    c.send(admin("org-b"), Vote(pid, True))
    info = cx.contract_info(c.state, "counter")
    assert info is not None and info.version == 1 and info.code_hash == sha256(wat.counter())
    assert c.state[cx.code_key(info.code_hash)] == wat.counter()


def test_init_runs_once_with_the_init_input(chain: Chain) -> None:
    assert counter_value(chain) == 41
    code, msg, r = chain.invoke("incr")
    assert (code, msg) == (OK, "") and r is not None
    assert r.outcome == cx.CallOutcome(
        True, "", 4068, (42).to_bytes(8, "little"), (cx.Event(b"tick", (42).to_bytes(8, "little")),)
    )
    assert counter_value(chain) == 42


def test_invoke_of_init_is_refused_statelessly() -> None:
    tx = make_tx(USER, 0, Invoke("counter", "init", b"", FUEL))
    with pytest.raises(TxRejected, match="runs only at deploy"):
        check_stateless(tx, CHAIN, 1 << 20)


def test_a_failed_call_keeps_nothing_but_its_nonce_and_receipt(chain: Chain) -> None:
    before = counter_value(chain)
    code, msg, r = chain.invoke("fail")
    assert (code, msg) == (CONTRACT_FAILED, "aborted: boom")
    assert r is not None and not r.outcome.ok and r.outcome.events == ()
    assert r.outcome.fuel_used == 3042
    assert counter_value(chain) == before
    assert u64(chain.state[nonce_key(USER)]) == 1


@pytest.mark.parametrize(
    ("method", "reason"),
    [
        ("spin", "out of fuel"),
        ("recurse", "stack overflow"),
        ("membomb", "trap: unreachable"),
        ("huge_result", "set_result: result exceeds"),
        ("huge_event", "emit: event exceeds"),
        ("oob_put", "put: pointer out of bounds"),
        ("write_then_spin", "out of fuel"),
    ],
)
def test_bad_contracts_fail_in_their_receipt(chain: Chain, method: str, reason: str) -> None:
    assert chain.deploy("bad", wat.bad()).state == gov.EXECUTED
    code, msg, r = chain.invoke(method, name="bad")
    assert code == CONTRACT_FAILED and msg.startswith(reason)
    assert r is not None and r.outcome.fuel_used <= FUEL
    assert not any(k.startswith(cx.state_key("bad", b"")) for k in chain.state)


def test_unknown_contract_and_method(chain: Chain) -> None:
    assert chain.invoke("incr", name="nope")[:2] == (NOT_FOUND, "unknown contract 'nope'")
    code, msg, _ = chain.invoke("nope")
    assert (code, msg) == (CONTRACT_FAILED, "the contract has no method 'nope'")
    with pytest.raises(TxRejected, match="has no method"):
        preflight(chain.state, make_tx(USER, 9, Invoke("counter", "nope", b"", FUEL)), chain.vm)


def test_fuel_limit_above_the_chain_cap_is_invalid(chain: Chain) -> None:
    code, msg, _ = chain.invoke("incr", fuel=10**10)
    assert code == INVALID and "contract_max_fuel" in msg


def test_deploy_by_a_non_member_is_refused(chain: Chain) -> None:
    action = DeployContract("evil", wat.counter())
    ab = codec.gov_action_to_pb(action).SerializeToString()
    assert chain.send(STRANGER, Propose(action, ab, 10))[0] == UNAUTHORIZED
    assert chain.send(USER, Propose(action, ab, 10))[0] == UNAUTHORIZED  # member, not admin
    assert chain.send(admin("org-a"), action)[0] == UNAUTHORIZED  # MAJORITY: not alone
    assert cx.contract_info(chain.state, "evil") is None


def test_invalid_code_is_refused_at_admission_and_fails_at_execution(chain: Chain) -> None:
    for source in (wat.WASI_WAT, wat.SIMD_WAT):
        action = DeployContract("bad2", wat.wasm(source))
        ab = codec.gov_action_to_pb(action).SerializeToString()
        with pytest.raises(TxRejected):
            preflight(chain.state, make_tx(admin("org-a"), 99, Propose(action, ab, 5)), chain.vm)
    p = chain.deploy("bad2", wat.wasm(wat.WASI_WAT))  # a proposer skipping admission
    assert p.state == gov.FAILED and "outside the contract ABI" in p.reason
    p = chain.deploy("junk", b"\x00asm\x01\x00\x00\x00\xff")
    assert p.state == gov.FAILED and "not a valid WebAssembly module" in p.reason
    assert cx.contract_info(chain.state, "bad2") is None


def test_a_failing_init_fails_the_deploy(chain: Chain) -> None:
    # the bad contract's memory bomb as init: FAILED, nothing stored
    init_bomb = wat.wasm(wat.BAD_WAT.replace('(export "membomb")', '(export "init")'))
    p = chain.deploy("bomb", init_bomb)
    assert p.state == gov.FAILED and p.reason == "init failed: trap: unreachable"
    assert cx.contract_info(chain.state, "bomb") is None


def test_upgrade_only_when_approved_and_state_is_kept(chain: Chain) -> None:
    pid = chain.propose("org-a", UpgradeContract("counter", wat.counter_v2()))
    chain.invoke("incr")
    assert counter_value(chain) == 42  # not approved: still the old code
    assert cx.contract_info(chain.state, "counter").version == 1  # type: ignore[union-attr]
    chain.send(admin("org-c"), Vote(pid, True))
    info = cx.contract_info(chain.state, "counter")
    assert info is not None and info.version == 2 and info.upgraded == chain.height
    chain.invoke("incr")
    assert counter_value(chain) == 52  # the new code, the old state


def test_upgrade_of_unknown_contract_fails(chain: Chain) -> None:
    p = chain.deploy("x", wat.counter())
    assert p.state == gov.EXECUTED
    pid = chain.propose("org-a", UpgradeContract("x", wat.counter_v2()))
    assert get_proposal(chain.state, pid).state == gov.PENDING  # type: ignore[union-attr]
    action = UpgradeContract("never-deployed", wat.counter_v2())
    ab = codec.gov_action_to_pb(action).SerializeToString()
    assert chain.send(admin("org-a"), Propose(action, ab, 10))[0] == NOT_FOUND


def test_engine_mismatch_refuses_to_execute(vm: WasmEngine) -> None:
    """A node whose engine differs from the chain's must not compute a receipt."""
    c = Chain(genesis(engine="wasmtime-1.0.0"), vm)
    pid = c.propose("org-a", DeployContract("counter", wat.counter()))
    with pytest.raises(cx.ContractsUnavailable, match=r"wasmtime-1\.0\.0"):
        c.send(admin("org-b"), Vote(pid, True))


def test_chain_without_contracts_engine(vm: WasmEngine) -> None:
    c = Chain(genesis(engine=""), vm)
    action = DeployContract("counter", wat.counter())
    ab = codec.gov_action_to_pb(action).SerializeToString()
    code, msg, _ = c.send(admin("org-a"), Propose(action, ab, 10))
    assert code == INVALID and "no contracts_engine" in msg


def test_two_engines_agree_on_every_root(vm: WasmEngine) -> None:
    """Determinism: two independent engines (separate stores, caches) over the same txs."""
    a, b = Chain(genesis(), vm), Chain(genesis(), WasmEngine())
    roots: list[tuple[bytes, bytes]] = []
    for c in (a, b):
        c.deploy("token", wat.token(), (10**6).to_bytes(8, "little"))
        c.deploy("bad", wat.bad())
    for i in range(30):
        to = sha256(str(i % 5).encode())
        payloads: list[Payload] = [
            Invoke("token", "transfer", to + (i * 7).to_bytes(8, "little"), FUEL),
            Invoke("bad", ("spin", "recurse", "membomb")[i % 3], b"", 50_000 + i),
        ]
        ra = a.run(*(a.tx(admin("org-a"), p) for p in payloads))
        rb = b.run(*(b.tx(admin("org-a"), p) for p in payloads))
        assert ra.receipts == rb.receipts
        roots.append((ra.state_root, rb.state_root))
    assert all(x == y for x, y in roots)
