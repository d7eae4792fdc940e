"""The consortium-crds chart (the one CRD file, kept on uninstall) and the consortium chart
(a Consortium from Helm values), rendered with the real helm binary."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from .conftest import CONSORTIUM_CHART, CRD_CHART, ROOT, Helm, one

pytestmark = pytest.mark.unit

CRD_FILE = CRD_CHART / "templates" / "consortium.dev_consortia.yaml"


def test_crd_chart_renders_the_crd_file_unchanged(helm: Helm) -> None:
    docs = helm.render(CRD_CHART)
    crd = one(docs, "CustomResourceDefinition", "consortia.consortium.dev")
    assert len(docs) == 1
    assert crd == yaml.safe_load(CRD_FILE.read_text())
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_crd_is_the_only_copy() -> None:
    """No other file in charts/ defines the Consortium CRD."""
    hits = [
        p
        for p in (ROOT / "charts").rglob("*.yaml")
        if "name: consortia.consortium.dev" in p.read_text() and p != CRD_FILE
    ]
    assert hits == []


def _consortium(helm: Helm, values: dict[str, Any] | None = None, release: str = "demo") -> Any:
    docs = helm.render(CONSORTIUM_CHART, values, release=release, namespace="chain")
    return one(docs, "Consortium")


def test_default_values_are_the_example(helm: Helm) -> None:
    """The chart's default Consortium is examples/consortium.yaml, except that a Helm
    release keeps its ledger volumes by default (deletionPolicy Retain)."""
    cons = _consortium(helm)
    example = yaml.safe_load((ROOT / "examples" / "consortium.yaml").read_text())
    assert cons["apiVersion"] == example["apiVersion"]
    assert cons["metadata"]["name"] == example["metadata"]["name"] == "demo"
    assert cons["metadata"]["namespace"] == "chain"
    spec, want = dict(cons["spec"]), dict(example["spec"])
    assert spec.pop("deletionPolicy") == "Retain"
    want.pop("deletionPolicy")
    assert spec == want
    for label in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "helm.sh/chart"):
        assert cons["metadata"]["labels"][label]


def test_rendered_spec_is_accepted_by_the_operator(helm: Helm) -> None:
    from consortium_operator.model import ConsortiumSpec

    values = {
        "name": "ledger",
        "labels": {"team": "chain"},
        "spec": {
            "chainId": "ledger-1",
            "consensus": {"type": "raft"},
            "organizations": [{"name": "solo", "validators": 3}],
            "deletionPolicy": "Delete",
        },
    }
    cons = _consortium(helm, values)
    assert cons["metadata"]["name"] == "ledger"
    assert cons["metadata"]["labels"]["team"] == "chain"
    parsed = ConsortiumSpec.parse(cons["spec"])
    assert parsed.chain_id == "ledger-1"
    ConsortiumSpec.parse(_consortium(helm)["spec"])


@pytest.mark.parametrize(
    "values",
    [
        {"spec": {"chainId": "x", "organizations": {"name": "a"}}},
        {"spec": {"chainId": "x", "organizations": [{"name": "a", "validators": "two"}]}},
        {"spec": {"chainId": "x", "organizations": []}},
        {"spec": {"chainId": 7, "organizations": [{"name": "a", "validators": 4}]}},
        {"spec": {"deletionPolicy": "Keep"}},
        {"name": "Bad_Name"},
        {"nmae": "typo"},
    ],
    ids=["orgs-object", "validators-string", "orgs-empty", "chainId-int", "policy", "name", "typo"],
)
def test_consortium_schema_rejects(helm: Helm, values: dict[str, Any]) -> None:
    proc = helm.template(CONSORTIUM_CHART, values, check=False)
    assert proc.returncode != 0, f"accepted {values}"
    assert "schema" in proc.stderr, proc.stderr
