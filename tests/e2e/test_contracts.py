"""A WebAssembly contract from a ConfigMap, deployed through governance by the operator on a
real cluster and invoked (issue 16, e2e): three organisations — acme votes automatically,
globex and initech are `approve: manual` — and a Consortium spec declaring the example token
(examples/contracts/wasm/token.wasm in ConfigMap `token-wasm`).

The operator opens the DeployContract proposal as acme, status.contracts shows it Proposed
at "1/3, need 2" while the chain moves on, a person of globex votes yes with the CLI, and the
contract is Deployed with the module's code hash; then a transfer is invoked through the
client Service and its effect read back with a query.

The operator is installed by the `installed` fixture of test_consortium_lifecycle (helm, in a
namespace of its own). Timings are printed with an `[e2e]` prefix."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest

from tests.support.contract_harness import WASM

from .consortium_fixtures import Chain, report
from .test_consortium_lifecycle import Installed, installed  # noqa: F401  (module fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

NAME = "wasm"
TOKEN = WASM / "token.wasm"
SUPPLY = 1_000_000
ADMIN_KEY = "/tmp/acme-admin.json"


def manifest() -> str:
    return json.dumps(
        {
            "apiVersion": "consortium.dev/v1alpha1",
            "kind": "Consortium",
            "metadata": {"name": NAME},
            "spec": {
                "chainId": "wasm-e2e",
                "consensus": {"type": "raft"},
                "organizations": [
                    {"name": "acme", "validators": 1},
                    {"name": "globex", "validators": 1, "approve": "manual"},
                    {"name": "initech", "validators": 1, "approve": "manual"},
                ],
                "contracts": [
                    {
                        "name": "token",
                        "configMap": "token-wasm",
                        "key": "token.wasm",
                        "initInput": SUPPLY.to_bytes(8, "little").hex(),
                    }
                ],
            },
        }
    )


def contract_status(obj: dict[str, Any]) -> dict[str, Any] | None:
    entries = (obj.get("status") or {}).get("contracts") or []
    return next((e for e in entries if e.get("name") == "token"), None)


@pytest.fixture(scope="module")
def chain(installed: Installed, node_image: str) -> Chain:  # noqa: F811
    c = Chain(installed.kube, installed.namespace, NAME)
    c.start_client(node_image)
    c.k("create", "configmap", "token-wasm", f"--from-file=token.wasm={TOKEN}")
    c.kube.apply(manifest(), namespace=c.namespace)
    return c


def admin_public(c: Chain, org: str) -> str:
    return str(json.loads(c.secret(f"{NAME}-{org}-admin")["admin.json"])["public_key"])


def test_a_configmap_contract_is_deployed_through_governance_and_invoked(
    chain: Chain, request: pytest.FixtureRequest
) -> None:
    t0 = time.monotonic()

    def proposed() -> dict[str, Any] | None:
        e = contract_status(chain.get())
        return e if e is not None and e.get("state") == "Proposed" else None

    st = chain.wait("the deploy proposal waiting for approvals", proposed, 420)
    code_hash = hashlib.sha256(TOKEN.read_bytes()).hexdigest()
    assert st["approvals"] == "1/3, need 2" and st["waitingFor"] == ["globex", "initech"], st
    assert st["moduleHash"] == code_hash and st["version"] == 0, st
    report(request.config, f"Consortium -> deploy proposal open: {time.monotonic() - t0:.1f}s")
    props = chain.get()["status"]["proposals"]
    (p,) = [x for x in props if x["action"] == "deploy_contract"]
    assert p["proposer"] == "acme" and p["votes"] == ["acme=yes"], p

    # globex's person votes with the CLI and globex's own admin key
    chain.use_client_tls("globex")
    chain.put_files("/tmp", {"globex-admin.json": chain.secret(f"{NAME}-globex-admin")["admin.json"]})  # fmt: skip
    t1 = time.monotonic()
    chain.wait_every_node(  # else the CLI waits for it (cli/gov.await_proposal)
        f"proposal {p['id']} known",
        lambda ep: bool(chain.cli("gov", "show", str(p["id"]), "--json", "--endpoint", ep)),
    )
    out = chain.cli(
        *("gov", "vote", str(p["id"]), "yes", "--key", "/tmp/globex-admin.json", "--json"),
        # the vote that executes the deploy compiles the module in that block: under a loaded
        # machine (a second CI beside this one) its commit once took over 30 s
        *("--endpoint", chain.endpoint, "--wait-timeout", "90"),
        timeout=150,
    )
    voted = json.loads(out)
    assert voted["proposal"]["state"] == "EXECUTED", out
    chain.wait_all_at(int(voted["height"]))  # every route of the Service knows the contract

    def deployed() -> dict[str, Any] | None:
        e = contract_status(chain.get())
        return e if e is not None and e.get("state") == "Deployed" else None

    st = chain.wait("status.contracts to show the token deployed", deployed, 180)
    assert (st["version"], st["codeHash"]) == (1, code_hash), st
    report(request.config, f"CLI vote -> contract Deployed in status: {time.monotonic() - t1:.1f}s")
    shown = json.loads(
        chain.cli("contract", "show", "token", "--json", "--endpoint", chain.endpoint)
    )
    assert shown["code_hash"] == code_hash and "transfer" in shown["methods"], shown

    # init minted the supply to the deployer: the proposer, acme's admin key
    acme, globex = admin_public(chain, "acme"), admin_public(chain, "globex")

    def balance(who: str, after: int = 0) -> int:
        """Through the client Service, which may pick a node a block behind: as of height
        `after` (the block of a call that changed it) or later."""
        return int(
            chain.cli(
                *("contract", "query", "token", "balance_of", "--arg", f"key:{who}"),
                *("--result", "u64", "--endpoint", chain.endpoint, "--min-height", str(after)),
            )
        )

    assert balance(acme) == SUPPLY
    chain.put_files("/tmp", {"acme-admin.json": chain.secret(f"{NAME}-acme-admin")["admin.json"]})
    got = json.loads(
        chain.cli(
            *("contract", "call", "token", "transfer", "--arg", f"key:{globex}"),
            *("--arg", "u64:250", "--key", ADMIN_KEY, "--json", "--endpoint", chain.endpoint),
            timeout=90,
        )
    )
    assert got["ok"] and got["fuel_used"] == 15384, got  # the golden figure
    assert [e["topic"] for e in got["events"]] == ["transfer"], got
    assert (balance(acme, got["height"]), balance(globex, got["height"])) == (SUPPLY - 250, 250)
