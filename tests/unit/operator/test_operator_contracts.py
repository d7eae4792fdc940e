"""Contracts in the Consortium spec (issue 16, operator part): the planner proposes each
spec contract's deployment through governance — opened by the first `approve: auto`
organisation, voted yes by the others that approve automatically, left pending for manual
ones — and its upgrade only when the module changed AND the spec raised the version; status
shows per contract the deployed version and code hash, and an open proposal's approvals.

Worlds come from test_operator_governance (three organisations governing the chain, the
scale-up already done so that contracts are the only thing left to do)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest
from consortium_api.v1 import types_pb2
from consortium_operator import nodes, plan, reconcile, status
from consortium_operator.model import ConsortiumSpec, ContractView, Observed, SpecError

from tests.unit.operator.test_operator_governance import (
    KEYS,
    NOW,
    OWNER,
    PUBLIC,
    SETTINGS,
    GovChain,
    OrgKube,
    gchain,  # noqa: F401  (fixture)
    governed,
    gspec,
    next_action,
    proposal,
)
from tests.unit.operator.test_operator_plan import N

pytestmark = pytest.mark.unit

MODULE = b"\x00asm\x01\x00\x00\x00token-v1"
MODULE_2 = b"\x00asm\x01\x00\x00\x00token-v2"
H1, H2 = hashlib.sha256(MODULE).digest(), hashlib.sha256(MODULE_2).digest()


def cspec(version: int = 1, approve: Mapping[str, str] | None = None) -> ConsortiumSpec:
    base = gspec(approve, validators={"a": 2})
    return replace(
        base,
        contracts=ConsortiumSpec.parse(
            {
                "chainId": "x",
                "organizations": [{"name": "a", "validators": 1}],
                "consensus": {"type": "raft"},
                "contracts": [
                    {
                        "name": "token",
                        "configMap": "token-wasm",
                        "key": "token.wasm",
                        "version": version,
                        "initInput": "e803000000000000",
                    }
                ],
            }
        ).contracts,
    )


def world(
    sp: ConsortiumSpec,
    deployed: Mapping[str, ContractView] | None = None,
    module: bytes | str = MODULE,
    proposals: Any = (),
) -> Observed:
    # a at 2 validators: the membership is as the spec asks, contracts are what is left
    o = governed(sp, proposals, replicas={"a": 2, "b": 1, "c": 1},
                 validators={"c-a-0", "c-a-1", "c-b-0", "c-c-0"})  # fmt: skip
    return replace(o, contracts=dict(deployed or {}), contract_modules={"token": module})


DEPLOY = plan.DeployContract("token", MODULE, H1, bytes.fromhex("e803000000000000"))


def test_a_spec_contract_is_proposed_for_deployment_by_an_auto_organisation() -> None:
    sp = cspec()
    assert next_action(sp, world(sp)) == plan.Propose(DEPLOY, "a")
    # a manual first organisation: the next auto one proposes
    sp = cspec(approve={"a": "manual"})
    assert next_action(sp, world(sp)) == plan.Propose(DEPLOY, "b")


def test_the_open_proposal_is_voted_then_awaited() -> None:
    sp = cspec(approve={"c": "manual"})
    subject = ("deploy_contract", f"token@{H1.hex()}")
    p = proposal(change=subject)
    assert next_action(sp, world(sp, proposals=(p,))) == plan.Vote(7, "b", DEPLOY)
    both = proposal(change=subject, votes=(("a", True), ("b", True)), needed=3)
    a = next_action(sp, world(sp, proposals=(both,)))
    assert isinstance(a, plan.Wait) and a.reason == "WaitingForApprovals"
    assert "2/3, need 3" in a.message and "waiting for c" in a.message


def test_deployed_contract_with_the_same_module_is_converged() -> None:
    sp = cspec()
    o = world(sp, {"token": ContractView("token", H1, 1)})
    assert isinstance(next_action(sp, o), plan.Converged)
    entry = status_of(sp, o)
    assert entry == {
        "name": "token",
        "version": 1,
        "codeHash": H1.hex(),
        "desiredVersion": 1,
        "moduleHash": H1.hex(),
        "state": "Deployed",
    }


def test_a_new_module_is_upgraded_only_when_the_version_is_raised() -> None:
    o_v1 = {"token": ContractView("token", H1, 1)}
    sp = cspec(version=1)
    o = world(sp, o_v1, module=MODULE_2)
    assert isinstance(next_action(sp, o), plan.Converged)  # the chain keeps running v1
    entry = status_of(sp, o)
    assert entry["state"] == "ModuleChanged" and "raise version above 1" in entry["message"]
    sp2 = cspec(version=2)
    up = plan.UpgradeContract("token", MODULE_2, H2, 1)
    assert next_action(sp2, world(sp2, o_v1, module=MODULE_2)) == plan.Propose(up, "a")
    assert status_of(sp2, world(sp2, o_v1, module=MODULE_2))["state"] == "UpgradePending"
    # upgraded (version 2 runs the new module): converged
    done = world(sp2, {"token": ContractView("token", H2, 2)}, module=MODULE_2)
    assert isinstance(next_action(sp2, done), plan.Converged)


def test_a_missing_module_blocks_with_the_reason() -> None:
    sp = cspec()
    o = world(sp, module="ConfigMap token-wasm has no key token.wasm")
    a = next_action(sp, o)
    assert a == plan.Blocked(
        "ContractSourceMissing", "contract token: ConfigMap token-wasm has no key token.wasm"
    )
    assert status_of(sp, o)["state"] == "SourceMissing"


def test_a_legacy_chain_is_told_to_migrate_not_deployed_to_directly() -> None:
    sp = cspec()
    a = next_action(sp, replace(world(sp), org_governance=False, admin_public=b"\x09" * 32))
    assert isinstance(a, plan.Blocked) and a.reason == "ContractsNeedGovernance"
    assert "consortium gov migrate" in a.message


def test_unknown_contracts_wait_for_a_node() -> None:
    sp = cspec()
    a = next_action(sp, replace(world(sp), contracts=None))
    assert a == plan.Wait("WaitingForNodes", "waiting for a node to report the chain's contracts")


def test_a_refused_deploy_blocks_until_the_module_changes() -> None:
    sp = cspec()
    refused = proposal(state="REJECTED", change=("deploy_contract", f"token@{H1.hex()}"))
    a = next_action(sp, world(sp, proposals=(refused,)))
    assert isinstance(a, plan.Blocked) and a.reason == "ProposalRefused"
    # a corrected module is another proposal
    a = next_action(sp, world(sp, module=MODULE_2, proposals=(refused,)))
    new = plan.DeployContract("token", MODULE_2, H2, bytes.fromhex("e803000000000000"))
    assert a == plan.Propose(new, "a")


def test_status_shows_the_open_proposal() -> None:
    sp = cspec(approve={"c": "manual"})
    p = proposal(change=("deploy_contract", f"token@{H1.hex()}"), votes=(("a", True),))
    entry = status_of(sp, world(sp, proposals=(p,)))
    assert entry["state"] == "Proposed" and entry["proposal"] == 7
    assert entry["approvals"] == "1/3, need 2" and entry["waitingFor"] == ["b", "c"]
    assert entry["version"] == 0 and entry["codeHash"] == ""


def status_of(sp: ConsortiumSpec, o: Observed) -> dict[str, Any]:
    step = plan.next_step(sp, o, N, "img", max_lag=2)
    ctx = status.Context(N, "ns", 1, [], "2026-01-01T00:00:00Z", 2)
    (entry,) = status.build(sp, o, step, ctx)["contracts"]
    assert isinstance(entry, dict)
    return entry


@pytest.mark.parametrize(
    ("contract", "message"),
    [
        ({"name": "Token", "configMap": "m"}, "spec.contracts[0].name"),
        ({"name": "t", "configMap": "M_"}, "spec.contracts[0].configMap"),
        ({"name": "t", "configMap": "m", "key": "a/b"}, "spec.contracts[0].key"),
        ({"name": "t", "configMap": "m", "version": 0}, "spec.contracts[0].version"),
        ({"name": "t", "configMap": "m", "initInput": "abc"}, "spec.contracts[0].initInput"),
    ],
)
def test_invalid_contract_specs_are_refused(contract: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ConsortiumSpec.parse(
            {
                "chainId": "x",
                "organizations": [{"name": "a", "validators": 1}],
                "consensus": {"type": "raft"},
                "contracts": [contract],
            }
        )


# --------------------------------------------------------------------------- the reconcile pass


class ContractKube(OrgKube):
    """OrgKube plus ConfigMaps, read through the real Kube.contract_modules (binaryData)."""

    def __init__(self, observed: Observed, maps: Mapping[str, dict[str, Any]]) -> None:
        super().__init__(observed, KEYS)
        self.maps = dict(maps)

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        assert kind == "ConfigMap"
        return self.maps.get(name)


def _contract_subject(st: Mapping[str, Any] | None = None) -> Any:
    raw = {
        "chainId": "test",
        "consensus": {"type": "raft"},
        "organizations": [
            {"name": "a", "validators": 2},
            {"name": "b", "validators": 1},
            {"name": "c", "validators": 1, "approve": "manual"},
        ],
        "security": {"tls": False},
        "contracts": [{"name": "token", "configMap": "token-wasm", "key": "token.wasm"}],
    }
    return reconcile.Subject(OWNER, raw, status=dict(st or {}), generation=1)


def test_reconcile_proposes_the_configmap_module_and_shows_it_deployed(
    gchain: GovChain,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gchain.validators = ["c-a-0", "c-a-1", "c-b-0", "c-c-0"]
    deployed: dict[str, ContractView] = {}

    async def contracts(*_: Any) -> dict[str, ContractView]:
        return dict(deployed)

    monkeypatch.setattr(nodes, "contracts", contracts)
    sp = ConsortiumSpec.parse(_contract_subject().spec)
    o = governed(sp, None, replicas={"a": 2, "b": 1, "c": 1},
                 validators={"c-a-0", "c-a-1", "c-b-0", "c-c-0"})  # fmt: skip
    o = replace(o, org_admins=PUBLIC, nodes={}, proposals=None)
    cm = {"binaryData": {"token.wasm": base64.b64encode(MODULE).decode()}}
    kube = ContractKube(o, {"token-wasm": cm})
    env = reconcile.Env(SETTINGS, kube, clock=lambda: NOW)
    ev = reconcile.Events(lambda r, m: None, lambda r, m: None)

    out = asyncio.run(reconcile.reconcile(env, _contract_subject(), ev))
    assert out.message == f"propose to deploy contract token (code {H1.hex()[:16]}) (as a)"
    ((signer, action),) = gchain.signed
    assert gchain.org_of(signer) == "a" and isinstance(action, plan.Propose)
    # what goes on the wire: a Propose of DeployContract carrying the ConfigMap's bytes
    wire = nodes._payload(action, 100)
    assert isinstance(wire, types_pb2.Propose)
    gov = types_pb2.GovAction.FromString(wire.action)
    assert gov.deploy_contract.name == "token" and gov.deploy_contract.code == MODULE

    # b votes automatically and carries it (the fake chain's MAJORITY of 3)
    gchain.proposals[0] = replace(gchain.proposals[0], change=plan.change_key(DEPLOY_NO_INIT))
    out = asyncio.run(reconcile.reconcile(env, _contract_subject(kube.statuses[-1]), ev))
    assert out.message == f"vote yes on proposal 1 ({DEPLOY_NO_INIT}) as b"
    deployed["token"] = ContractView("token", H1, 1)
    asyncio.run(reconcile.reconcile(env, _contract_subject(kube.statuses[-1]), ev))
    (entry,) = kube.statuses[-1]["contracts"]
    assert (entry["state"], entry["version"], entry["codeHash"]) == ("Deployed", 1, H1.hex())
    assert len(gchain.signed) == 2  # nothing more to sign


def test_a_configmap_without_the_key_is_reported_not_proposed(gchain: GovChain) -> None:  # noqa: F811
    kube = ContractKube(Observed(), {"token-wasm": {"data": {"other": "eA=="}}})
    got = asyncio.run(kube.contract_modules("ns", cspec().contracts))
    assert got == {"token": "ConfigMap token-wasm has no key token.wasm"}
    kube.maps = {}
    assert asyncio.run(kube.contract_modules("ns", cspec().contracts)) == {
        "token": "ConfigMap token-wasm does not exist"
    }
    kube.maps = {"token-wasm": {"data": {"token.wasm": "not base64!"}}}
    assert asyncio.run(kube.contract_modules("ns", cspec().contracts)) == {
        "token": "ConfigMap token-wasm entry token.wasm is not base64"
    }
    assert gchain.signed == []


DEPLOY_NO_INIT = plan.DeployContract("token", MODULE, H1)
