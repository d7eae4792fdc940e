"""The Consortium CRD in a real kube-apiserver: valid specs are accepted and defaulted,
invalid ones are REJECTED at create time with the CEL messages, immutable fields stay put, and
`kubectl explain` documents the spec."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import ROOT, Kubectl

pytestmark = pytest.mark.integration


def manifest(name: str = "c1", **spec: Any) -> str:
    body: dict[str, Any] = {
        "chainId": "chain-1",
        "organizations": [{"name": "acme", "validators": 2}, {"name": "beta", "validators": 2}],
    }
    body.update(spec)
    return json.dumps(
        {
            "apiVersion": "consortium.dev/v1alpha1",
            "kind": "Consortium",
            "metadata": {"name": name},
            "spec": body,
        }
    )


@pytest.mark.parametrize(
    "example", sorted((ROOT / "examples").glob("consortium*.yaml")), ids=lambda p: p.name
)
def test_examples_are_accepted(kubectl: Kubectl, namespace: str, example: Path) -> None:
    p = kubectl.run("apply", "--dry-run=server", "-n", namespace, "-f", str(example), check=False)
    assert p.returncode == 0, p.stderr


def test_defaults_are_filled_in(kubectl: Kubectl, namespace: str) -> None:
    p = kubectl.apply(manifest(), namespace)
    assert p.returncode == 0, p.stderr
    obj = kubectl.get("consortium", "c1", namespace)
    assert obj is not None
    spec = obj["spec"]
    assert spec["consensus"] == {
        "type": "bft",
        "maxBlockTxs": 2000,
        "blockIntervalMs": 50,
        "emptyBlockIntervalMs": 2000,
        "tickMs": 10,
        "electionTimeoutMs": 500,
        "heartbeatIntervalMs": 50,
    }
    assert spec["deletionPolicy"] == "Retain" and spec["imagePullPolicy"] == "IfNotPresent"
    assert spec["genesis"] == {"maxTxBytes": 131072, "membership": "permissioned"}
    assert spec["security"]["tls"] is True and spec["security"]["certRenewBeforeDays"] == 30
    assert spec["organizations"][0]["storage"] == {"size": "1Gi"}
    # how each organisation's governance votes are cast: auto unless it says manual
    assert [o["approve"] for o in spec["organizations"]] == ["auto", "auto"]
    # short name and printer columns work
    out = kubectl.run("get", "cons", "-n", namespace).stdout
    assert out.split()[:6] == ["NAME", "PHASE", "HEIGHT", "READY", "CONSENSUS", "AGE"]


INVALID = [
    (
        "bft-too-small",
        {"organizations": [{"name": "acme", "validators": 3}]},
        "bft consensus needs at least 4 validators",
    ),
    (
        "duplicate-orgs",
        {"organizations": [{"name": "acme", "validators": 2}, {"name": "acme", "validators": 2}]},
        "organization names must be unique",
    ),
    ("bad-chain-id", {"chainId": "Not A Chain!"}, "chainId must be 1-64 characters"),
    (
        "negative-balance",
        {"genesis": {"accounts": [{"asset": "coin", "account": "ab" * 32, "amount": -5}]}},
        "genesis account balances must not be negative",
    ),
    (
        "bad-account",
        {"genesis": {"accounts": [{"asset": "coin", "account": "xyz", "amount": 5}]}},
        "account must be a 32-byte public key",
    ),
    (
        "bad-org-name",
        {"organizations": [{"name": "Acme_Corp", "validators": 4}]},
        "organization name must be lowercase",
    ),
    (
        "no-validators",
        {"consensus": {"type": "raft"}, "organizations": [{"name": "acme", "validators": 0}]},
        "at least one validator",
    ),
    (
        "timeouts",
        {"consensus": {"type": "raft", "electionTimeoutMs": 100, "heartbeatIntervalMs": 80}},
        "electionTimeoutMs must be at least twice",
    ),
    ("bad-enum", {"consensus": {"type": "pbft"}}, "Unsupported value"),
    (
        "bad-approve",
        {
            "organizations": [
                {"name": "acme", "validators": 2, "approve": "sometimes"},
                {"name": "beta", "validators": 2},
            ]
        },
        "Unsupported value",
    ),
    (
        "bad-size",
        {"organizations": [{"name": "acme", "validators": 4, "storage": {"size": "lots"}}]},
        "storage.size must be a quantity",
    ),
    ("bad-param", {"parameters": {"maxTxBytes": 10}}, "spec.parameters.maxTxBytes"),
]


@pytest.mark.parametrize(("case", "spec", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_specs_are_rejected_at_create(
    kubectl: Kubectl, namespace: str, case: str, spec: dict[str, Any], message: str
) -> None:
    p = kubectl.apply(manifest(case, **spec), namespace)
    assert p.returncode != 0, f"{case} was accepted"
    assert message in p.stderr, p.stderr
    assert kubectl.get("consortium", case, namespace) is None


def test_name_length_is_limited(kubectl: Kubectl, namespace: str) -> None:
    p = kubectl.apply(manifest("x" * 31), namespace)
    assert p.returncode != 0 and "at most 30 characters" in p.stderr


IMMUTABLE = [
    (
        "chainId",
        [{"op": "replace", "path": "/spec/chainId", "value": "other"}],
        "chainId is immutable",
    ),
    (
        "consensus",
        [{"op": "replace", "path": "/spec/consensus/type", "value": "raft"}],
        "consensus.type is immutable",
    ),
    (
        "genesis",
        [{"op": "add", "path": "/spec/genesis/kv", "value": [{"key": "a", "value": "b"}]}],
        "genesis is immutable",
    ),
    (
        "storage",
        [{"op": "replace", "path": "/spec/organizations/0/storage/size", "value": "5Gi"}],
        "storage is immutable",
    ),
    (
        "remove-org",
        [
            {"op": "remove", "path": "/spec/organizations/1"},
            {"op": "replace", "path": "/spec/organizations/0/validators", "value": 4},
        ],
        "an organization cannot be removed",
    ),
    (
        "tls-off",
        [{"op": "replace", "path": "/spec/security/tls", "value": False}],
        "security.tls is fixed at creation",
    ),
    (
        "scale-below-bft",
        [{"op": "replace", "path": "/spec/organizations/0/validators", "value": 1}],
        "bft consensus needs at least 4 validators",
    ),
]


@pytest.mark.parametrize(("case", "patch", "message"), IMMUTABLE, ids=[c[0] for c in IMMUTABLE])
def test_updates_that_would_fork_the_chain_are_rejected(
    kubectl: Kubectl, namespace: str, case: str, patch: list[dict[str, Any]], message: str
) -> None:
    assert kubectl.apply(manifest("imm"), namespace).returncode == 0
    p = kubectl.run(
        "patch",
        "consortium",
        "imm",
        "-n",
        namespace,
        "--type=json",
        "-p",
        json.dumps(patch),
        check=False,
    )
    assert p.returncode != 0, f"{case} was accepted"
    assert message in p.stderr, p.stderr


def test_allowed_updates(kubectl: Kubectl, namespace: str) -> None:
    assert kubectl.apply(manifest("ok"), namespace).returncode == 0
    patch = [
        {"op": "replace", "path": "/spec/organizations/0/validators", "value": 3},
        {"op": "add", "path": "/spec/image", "value": "consortium/node:v2"},
        {"op": "add", "path": "/spec/organizations/-", "value": {"name": "gamma", "validators": 1}},
    ]
    kubectl.run(
        "patch", "consortium", "ok", "-n", namespace, "--type=json", "-p", json.dumps(patch)
    )


def test_kubectl_explain_documents_the_spec(kubectl: Kubectl) -> None:
    out = kubectl.run("explain", "consortium.spec").stdout
    for field in ("chainId", "consensus", "organizations", "genesis", "deletionPolicy", "image"):
        assert field in out
    assert "signed into every transaction" in out
    orgs = kubectl.run("explain", "consortium.spec.organizations").stdout
    assert "validators" in orgs and "StatefulSet" in orgs


def test_crd_file_is_plain_yaml() -> None:
    text = (ROOT / "charts/consortium-crds/templates/consortium.dev_consortia.yaml").read_text()
    assert "{{" not in text
    (doc,) = list(yaml.safe_load_all(text))
    assert doc["kind"] == "CustomResourceDefinition"


def test_approve_manual_is_accepted_and_kept(kubectl: Kubectl, namespace: str) -> None:
    orgs = [
        {"name": "acme", "validators": 2},
        {"name": "beta", "validators": 1, "approve": "manual"},
        {"name": "gamma", "validators": 1, "approve": "auto"},
    ]
    assert kubectl.apply(manifest("votes", organizations=orgs), namespace).returncode == 0
    obj = kubectl.get("consortium", "votes", namespace)
    assert obj is not None
    assert [o["approve"] for o in obj["spec"]["organizations"]] == ["auto", "manual", "auto"]
    # and may change later (it decides future votes, not the chain)
    patch = [{"op": "replace", "path": "/spec/organizations/1/approve", "value": "auto"}]
    p = kubectl.run(
        "patch", "consortium", "votes", "-n", namespace, "--type=json", "-p", json.dumps(patch)
    )
    assert p.returncode == 0, p.stderr


CONTRACT = {"name": "token", "configMap": "token-wasm"}
BAD_CONTRACTS = [
    ("Token", {"name": "Token"}, "contract name must be lowercase"),
    ("cm", {"configMap": "Token_Wasm"}, "configMap must be a ConfigMap name"),
    ("key", {"key": "a/b"}, "key must be a ConfigMap key"),
    ("version", {"version": 0}, "should be greater than or equal to 1"),
    ("init", {"initInput": "abc"}, "initInput must be lowercase hex bytes"),
]


@pytest.mark.parametrize(
    ("case", "change", "message"), BAD_CONTRACTS, ids=[c[0] for c in BAD_CONTRACTS]
)
def test_invalid_contracts_are_rejected_at_create(
    kubectl: Kubectl, namespace: str, case: str, change: dict[str, Any], message: str
) -> None:
    p = kubectl.apply(manifest(f"ct-{case.lower()}", contracts=[{**CONTRACT, **change}]), namespace)
    assert p.returncode != 0, f"{case} was accepted"
    assert message in p.stderr, p.stderr


def test_contracts_are_defaulted_and_their_version_never_goes_down(
    kubectl: Kubectl, namespace: str
) -> None:
    assert kubectl.apply(manifest("ct", contracts=[CONTRACT]), namespace).returncode == 0
    obj = kubectl.get("consortium", "ct", namespace)
    assert obj is not None
    assert obj["spec"]["contracts"] == [
        {**CONTRACT, "key": "contract.wasm", "version": 1, "initInput": ""}
    ]

    def patch_version(v: int) -> subprocess.CompletedProcess[str]:
        op = [{"op": "replace", "path": "/spec/contracts/0/version", "value": v}]
        return kubectl.run(
            "patch", "consortium", "ct", "-n", namespace, "--type=json", "-p", json.dumps(op),
            check=False,
        )  # fmt: skip

    assert patch_version(3).returncode == 0  # an upgrade is asked for
    p = patch_version(2)
    assert p.returncode != 0 and "a contract's version cannot go down" in p.stderr, p.stderr


def test_parameters_may_change_after_creation(kubectl: Kubectl, namespace: str) -> None:
    """spec.parameters is the chain's live configuration (a change becomes a SetParam
    proposal), unlike consensus.maxBlockTxs, which is fixed at genesis."""
    assert kubectl.apply(manifest("params"), namespace).returncode == 0
    obj = kubectl.get("consortium", "params", namespace)
    assert obj is not None and obj["spec"]["parameters"] == {}
    patch = [{"op": "add", "path": "/spec/parameters/maxBlockTxs", "value": 500}]
    p = kubectl.run(
        "patch", "consortium", "params", "-n", namespace, "--type=json", "-p", json.dumps(patch)
    )
    assert p.returncode == 0, p.stderr
    obj = kubectl.get("consortium", "params", namespace)
    assert obj is not None and obj["spec"]["parameters"] == {"maxBlockTxs": 500}
