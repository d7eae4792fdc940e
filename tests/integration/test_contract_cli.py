"""`consortium contract` on a local consortium (issue 16, "for people"): three organisations
governing the chain (`consortium up --org-governance`), real node processes, every step
through the CLI with the example contracts of examples/contracts/wasm/.

The token is deployed by org1's proposal and carried by org2's vote; a call moves tokens
(the fuel the receipt reports is the golden figure of tests/unit/contracts), a query reads
the balance, a failing call exits 1 with the contract's reason, events come back by contract
and topic. The escrow settles a payment between org1 and org2 once both approved. Bad input
— no wasm, an unknown contract or method, a malformed argument, a non-admin proposing — is
one line on stderr."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from consortium_node.cli import app
from consortium_node.client.keys import Signer
from consortium_node.localnet import LocalNet, init_data_dir, parse_manifest
from typer.testing import CliRunner, Result

from tests.support.contract_harness import WASM

from .localnets import running

pytestmark = pytest.mark.integration

MANIFEST = {
    "kind": "Consortium",
    "metadata": {"name": "wasm"},
    "spec": {
        "chainId": "wasm-chain",
        "consensus": {"type": "raft", "blockIntervalMs": 10, "tickMs": 10},
        "organizations": [{"name": f"org{i}", "validators": 1} for i in (1, 2, 3)],
    },
}
runner = CliRunner()
TRANSFER_FUEL = 15384  # tests/unit/contracts/test_fuel_golden.py GOLDEN["token"]["transfer"]
OVERDRAWN_FUEL = 9776  # ... ["transfer over balance"]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNet]:
    d = tmp_path_factory.mktemp("contracts") / "net"
    init_data_dir(parse_manifest(MANIFEST), d, fsync=False, org_governance=True)
    with running(d) as n:
        yield n


def admin(net: LocalNet, org: str) -> str:
    return str(net.data_dir / "keys" / f"admin-{org}.json")


def cli(net: LocalNet, key: str | None, *args: str) -> Result:
    k = [] if key is None else ["--key", key]
    return runner.invoke(app, [*args, "--data-dir", str(net.data_dir), *k])


def ok(r: Result) -> dict[str, Any]:
    assert r.exit_code == 0, r.output
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def one_error(r: Result) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code != 0 and len(lines) == 1 and lines[0].startswith("error: "), r.output
    return lines[0]


def deploy(net: LocalNet, name: str, *init: str) -> None:
    """Propose as org1 (1/3: pending, not deployed), carry it with org2's vote."""
    wasm = str(WASM / f"{name}.wasm")
    out = ok(cli(net, admin(net, "org1"), "contract", "deploy", name, wasm, *init, "--json"))
    prop = out["proposal"]
    assert (prop["state"], prop["yes"], prop["needed"]) == ("PENDING", 1, 2)
    listed = ok(cli(net, None, "contract", "list", "--json"))
    assert name not in [c["name"] for c in listed["contracts"]]
    out = ok(cli(net, admin(net, "org2"), "gov", "vote", str(prop["id"]), "yes", "--json"))
    assert out["proposal"]["state"] == "EXECUTED"


def balance(net: LocalNet, contract: str, who: str) -> int:
    r = cli(net, None, "contract", "query", contract, "balance_of", "--arg", f"key:{who}",
            "--result", "u64")  # fmt: skip
    assert r.exit_code == 0, r.output
    return int(r.stdout)


def test_token_deploy_call_query_events(net: LocalNet) -> None:
    org1, org2 = admin(net, "org1"), admin(net, "org2")
    # init mints to the deployer: the proposer's admin key (org1)
    deploy(net, "token", "--arg", "u64:1000000")
    shown = ok(cli(net, None, "contract", "show", "token", "--json"))
    assert shown["version"] == 1 and len(shown["code_hash"]) == 64
    assert shown["methods"] == [
        "allowance", "approve", "balance_of", "total_supply", "transfer", "transfer_from",
    ]  # fmt: skip
    assert balance(net, "token", org1) == 1_000_000

    out = ok(cli(net, org1, "contract", "call", "token", "transfer", "--arg", f"key:{org2}",
                 "--arg", "u64:250", "--json"))  # fmt: skip
    assert (out["ok"], out["fuel_used"]) == (True, TRANSFER_FUEL)
    org1_pub, org2_pub = (Signer.load(k).public_key.hex() for k in (org1, org2))
    assert out["events"] == [
        {
            "topic": "transfer",
            "data": "0x" + org1_pub + org2_pub + (250).to_bytes(8, "little").hex(),
        }
    ]
    assert (balance(net, "token", org1), balance(net, "token", org2)) == (999_750, 250)

    # a failing call: the contract's reason, the fuel it used, exit 1; nothing kept
    r = cli(net, org2, "contract", "call", "token", "transfer", "--arg", f"key:{org1}",
            "--arg", "u64:251")  # fmt: skip
    line = one_error(r)
    assert line.startswith("error: call token.transfer failed at height ")
    assert line.endswith(f": aborted: insufficient balance (fuel used {OVERDRAWN_FUEL})")
    assert balance(net, "token", org2) == 250

    # allowance: org1 lets org2 spend 100, org2 moves 40 to org3
    org3 = admin(net, "org3")
    assert cli(net, org1, "contract", "call", "token", "approve", "--arg", f"key:{org2}",
               "--arg", "u64:100").exit_code == 0  # fmt: skip
    assert cli(net, org2, "contract", "call", "token", "transfer_from", "--arg", f"key:{org1}",
               "--arg", f"key:{org3}", "--arg", "u64:40").exit_code == 0  # fmt: skip
    r = cli(net, None, "contract", "query", "token", "allowance", "--arg", f"key:{org1}",
            "--arg", f"key:{org2}", "--result", "u64")  # fmt: skip
    assert r.stdout.strip() == "60"

    evs = cli(net, None, "contract", "events", "token", "--topic", "transfer", "--json")
    assert evs.exit_code == 0, evs.output
    got = [json.loads(line) for line in evs.stdout.splitlines()]
    assert [(e["method"], e["topic"]) for e in got] == [
        ("init", "transfer"), ("transfer", "transfer"), ("transfer_from", "transfer"),
    ]  # fmt: skip
    approvals = cli(net, None, "contract", "events", "--topic", "approval", "--json")
    assert [json.loads(x)["method"] for x in approvals.stdout.splitlines()] == ["approve"]


def test_escrow_settles_a_payment_between_two_organisations(net: LocalNet) -> None:
    org1, org2 = admin(net, "org1"), admin(net, "org2")
    # org1's settlement account is prefunded with 1000 at init
    deploy(net, "escrow", "--arg", f"key:{org1}", "--arg", "u64:1000")
    with net.client(0) as c:
        deadline = c.status().height + 1000
    opened = ok(cli(net, org1, "contract", "call", "escrow", "open", "--arg", "u64:1",
                    "--arg", f"key:{org2}", "--arg", "u64:600", "--arg", f"u64:{deadline}",
                    "--json"))  # fmt: skip
    assert [e["topic"] for e in opened["events"]] == ["opened"]
    assert (balance(net, "escrow", org1), balance(net, "escrow", org2)) == (400, 0)
    first = ok(cli(net, org2, "contract", "call", "escrow", "approve", "--arg", "u64:1", "--json"))
    assert [e["topic"] for e in first["events"]] == ["approved"]
    assert balance(net, "escrow", org2) == 0  # one approval does not release
    second = ok(cli(net, org1, "contract", "call", "escrow", "approve", "--arg", "u64:1", "--json"))
    assert [e["topic"] for e in second["events"]] == ["approved", "released"]
    assert (balance(net, "escrow", org1), balance(net, "escrow", org2)) == (400, 600)
    r = cli(net, org1, "contract", "call", "escrow", "refund", "--arg", "u64:1")
    assert "aborted: escrow 1 is already settled (fuel used " in one_error(r)
    record = cli(net, None, "contract", "query", "escrow", "escrow", "--arg", "u64:1",
                 "--result", "hex")  # fmt: skip
    assert record.stdout.strip().endswith("0103")  # state released, both approvals


def test_bad_input_is_one_line(net: LocalNet, tmp_path: Path) -> None:
    org1 = admin(net, "org1")
    not_wasm = tmp_path / "x.wasm"
    not_wasm.write_bytes(b"hello")
    assert "is not a WebAssembly module" in one_error(
        cli(net, org1, "contract", "deploy", "x", str(not_wasm))
    )
    assert "cannot read contract module" in one_error(
        cli(net, org1, "contract", "deploy", "x", str(tmp_path / "missing.wasm"))
    )
    # a key that is not an organisation's admin cannot propose
    client = str(net.data_dir / "keys" / "client.json")
    assert "not an admin" in one_error(
        cli(net, client, "contract", "deploy", "x", str(WASM / "counter.wasm"))
    )
    assert "unknown contract" in one_error(cli(net, None, "contract", "show", "nope"))
    assert "unknown contract" in one_error(cli(net, None, "contract", "query", "nope", "value"))
    assert "u64:x is not a number" in one_error(
        cli(net, org1, "contract", "call", "token", "transfer", "--arg", "u64:x")
    )
    assert "unknown type 'i9'" in one_error(
        cli(net, org1, "contract", "call", "token", "transfer", "--arg", "i9:1")
    )
    assert "--result" in one_error(
        cli(net, None, "contract", "query", "token", "total_supply", "--result", "xml")
    )


def test_wat_counter_upgrade_keeps_its_state(net: LocalNet) -> None:
    org1, org2 = admin(net, "org1"), admin(net, "org2")
    deploy(net, "counter", "--arg", "u64:41")
    out = ok(cli(net, org1, "contract", "call", "counter", "increment", "--result", "u64",
                 "--json"))  # fmt: skip
    assert out["result"] == "42" and [e["topic"] for e in out["events"]] == ["incremented"]
    wasm = str(WASM / "counter.wasm")
    prop = ok(cli(net, org1, "contract", "upgrade", "counter", wasm, "--json"))["proposal"]
    assert prop["state"] == "PENDING"
    # not approved yet: still version 1
    assert ok(cli(net, None, "contract", "show", "counter", "--json"))["version"] == 1
    voted = ok(cli(net, org2, "gov", "vote", str(prop["id"]), "yes", "--json"))
    assert voted["proposal"]["state"] == "EXECUTED"
    shown = ok(cli(net, None, "contract", "show", "counter", "--json"))
    assert shown["version"] == 2 and shown["upgraded_height"] > shown["deployed_height"]
    r = cli(net, None, "contract", "query", "counter", "value", "--result", "u64")
    assert r.stdout.strip() == "42"  # the state survived the upgrade
