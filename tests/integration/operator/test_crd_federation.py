"""The Consortium CRD's federation fields in a real kube-apiserver (issue 15): a federated spec
(localOrganizations, remote organisations with CA, admins and validators, an exposed local
organisation) is accepted and defaulted; a local organisation that is not declared, a remote
one without CA or admins, a local one described as remote, a remote one exposed, a remote
validator count that does not match its list, and a NodePort outside the node-port range are
REJECTED at `kubectl apply` time with the CEL messages; localOrganizations is immutable."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import Kubectl
from .test_crd_validation import manifest

pytestmark = pytest.mark.integration

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def remote(n: int = 2, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "caCert": CA,
        "admins": ["bb" * 32],
        "validators": [
            {"name": f"beta-{i}", "nodeId": f"{i:02x}" * 32, "address": f"172.18.0.3:3075{i}"}
            for i in range(n)
        ],
    }
    body.update(over)
    return body


def federated(**over: Any) -> dict[str, Any]:
    """acme local (2 validators, NodePort on 172.18.0.2), beta remote (2)."""
    body: dict[str, Any] = {
        "localOrganizations": ["acme"],
        "ceremony": {"configMap": "fed-ceremony"},
        "organizations": [
            {"name": "acme", "validators": 2, "expose": {"address": "172.18.0.2"}},
            {"name": "beta", "validators": 2, "remote": remote()},
        ],
    }
    body.update(over)
    return {k: v for k, v in body.items() if v is not None}


def test_a_federated_spec_is_accepted_and_defaulted(kubectl: Kubectl, namespace: str) -> None:
    p = kubectl.apply(manifest("fed", **federated()), namespace)
    assert p.returncode == 0, p.stderr
    obj = kubectl.get("consortium", "fed", namespace)
    assert obj is not None
    acme, beta = obj["spec"]["organizations"]
    assert acme["expose"] == {"address": "172.18.0.2", "type": "NodePort", "port": 30751}
    assert beta["remote"]["validators"][1]["address"] == "172.18.0.3:30751"
    patch: list[dict[str, Any]] = [
        {"op": "replace", "path": "/spec/localOrganizations", "value": ["acme", "beta"]}
    ]
    p = kubectl.run(
        "patch",
        "consortium",
        "fed",
        "-n",
        namespace,
        "--type=json",
        "-p",
        json.dumps(patch),
        check=False,
    )
    assert p.returncode != 0 and "localOrganizations is immutable" in p.stderr, p.stderr
    # genesisFrom may be added once the ceremony is done, and never changed after
    pin: dict[str, str] = {"configMap": "g", "sha256": "ab" * 32, "signaturesConfigMap": "s"}
    patch = [{"op": "add", "path": "/spec/genesisFrom", "value": pin}]
    p = kubectl.run(
        "patch",
        "consortium",
        "fed",
        "-n",
        namespace,
        "--type=json",
        "-p",
        json.dumps(patch),
        check=False,
    )
    assert p.returncode == 0, p.stderr
    patch = [{"op": "replace", "path": "/spec/genesisFrom/sha256", "value": "cd" * 32}]
    p = kubectl.run(
        "patch",
        "consortium",
        "fed",
        "-n",
        namespace,
        "--type=json",
        "-p",
        json.dumps(patch),
        check=False,
    )
    assert p.returncode != 0 and "genesisFrom is set once" in p.stderr, p.stderr


def test_genesis_from_cannot_name_the_operators_own_genesis(
    kubectl: Kubectl, namespace: str
) -> None:
    pin = {"configMap": "own-genesis", "sha256": "ab" * 32, "signaturesConfigMap": "s"}
    p = kubectl.apply(manifest("own", **federated(genesisFrom=pin)), namespace)
    assert p.returncode != 0 and "must not be <name>-genesis" in p.stderr, p.stderr


def test_during_the_ceremony_a_remote_organisation_is_a_name_and_a_count(
    kubectl: Kubectl, namespace: str
) -> None:
    body = federated(**orgs({}, {"validators": 2}))
    p = kubectl.apply(manifest("cer", **body), namespace)
    assert p.returncode == 0, p.stderr
    # the genesis comes with the remote organisations' descriptions, not without
    pin = {"configMap": "g", "sha256": "ab" * 32, "signaturesConfigMap": "s"}
    patch = [{"op": "add", "path": "/spec/genesisFrom", "value": pin}]
    p = kubectl.run(
        "patch",
        "consortium",
        "cer",
        "-n",
        namespace,
        "--type=json",
        "-p",
        json.dumps(patch),
        check=False,
    )
    assert p.returncode != 0 and "is remote and needs .remote" in p.stderr, p.stderr


def orgs(acme: dict[str, Any], beta: dict[str, Any]) -> dict[str, Any]:
    return {"organizations": [{"name": "acme", "validators": 2, **acme}, {"name": "beta", **beta}]}


INVALID = [
    (
        "undeclared-local",
        {"localOrganizations": ["acme", "gamma"]},
        "every entry of localOrganizations must be one of organizations",
    ),
    (
        "remote-undescribed",
        {
            **orgs({}, {"validators": 2}),
            "genesisFrom": {"configMap": "g", "sha256": "ab" * 32, "signaturesConfigMap": "s"},
        },
        "an organization not in localOrganizations is remote and needs .remote",
    ),
    (
        "local-described-remote",
        {"localOrganizations": ["acme", "beta"]},
        "a local organization must not have .remote",
    ),
    (
        "remote-without-ca",
        orgs({}, {"validators": 2, "remote": remote(caCert="")}),
        "a remote organization needs its CA certificate",
    ),
    (
        "remote-without-admins",
        orgs({}, {"validators": 2, "remote": remote(admins=[])}),
        "remote.admins needs at least one admin public key",
    ),
    (
        "remote-count",
        orgs({}, {"validators": 3, "remote": remote(2)}),
        "a remote organization's validators must equal the number of remote.validators",
    ),
    (
        "remote-exposed",
        orgs({}, {"validators": 2, "remote": remote(), "expose": {"address": "h"}}),
        "only a local organization's nodes are exposed",
    ),
    (
        "remote-bad-address",
        orgs(
            {},
            {
                "validators": 1,
                "remote": remote(
                    1, validators=[{"name": "b", "nodeId": "ab" * 32, "address": "no-port"}]
                ),
            },
        ),
        "a remote validator's address must be host:port",
    ),
    (
        "no-ceremony",
        {"ceremony": None},
        "a federated consortium (localOrganizations) takes its genesis from a",
    ),
    (
        "bad-genesis-sha",
        {"genesisFrom": {"configMap": "g", "sha256": "xyz", "signaturesConfigMap": "s"}},
        "genesisFrom.sha256 must be 64 lowercase hex characters",
    ),
    (
        "nodeport-range",
        orgs({"expose": {"address": "h", "port": 7051}}, {"validators": 2, "remote": remote()}),
        "expose.port must be in 30000..32736 for NodePort",
    ),
]


@pytest.mark.parametrize(("case", "spec", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_bad_federation_specs_are_rejected_at_create(
    kubectl: Kubectl, namespace: str, case: str, spec: dict[str, Any], message: str
) -> None:
    p = kubectl.apply(manifest(case, **federated(**spec)), namespace)
    assert p.returncode != 0, f"{case} was accepted"
    assert message in p.stderr, p.stderr
    assert kubectl.get("consortium", case, namespace) is None
