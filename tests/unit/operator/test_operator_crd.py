"""The CRD in charts/consortium-crds and consortium_operator.model agree: every model field is
a schema property and vice versa, defaults are equal, enums match the model's validation, the
status the operator writes fits the status schema, and the examples parse."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest
import yaml
from consortium_operator import model, plan, status
from consortium_operator.model import ConsortiumSpec, Names, NodeStatus, Observed, PodState, camel

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
CRD_FILE = ROOT / "charts" / "consortium-crds" / "templates" / "consortium.dev_consortia.yaml"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    doc = yaml.safe_load(CRD_FILE.read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    (v,) = crd["spec"]["versions"]
    assert isinstance(v, dict)
    return v


@pytest.fixture(scope="module")
def spec_schema(version: dict[str, Any]) -> dict[str, Any]:
    s = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert isinstance(s, dict)
    return s


def test_identity(crd: dict[str, Any], version: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == f"{model.PLURAL}.{model.GROUP}"
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    s = crd["spec"]
    assert (s["group"], s["names"]["kind"], s["names"]["plural"]) == (
        model.GROUP,
        model.KIND,
        model.PLURAL,
    )
    assert s["names"]["shortNames"] == ["cons"] and s["scope"] == "Namespaced"
    assert version["name"] == model.VERSION and version["storage"] and version["served"]
    assert version["subresources"] == {"status": {}}


def test_printer_columns(version: dict[str, Any]) -> None:
    cols = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert cols == {
        "Phase": ".status.phase",
        "Height": ".status.height",
        "Ready": ".status.readyValidators",
        "Consensus": ".spec.consensus.type",
        "Age": ".metadata.creationTimestamp",
    }


def _fields(tp: Any) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return _fields(next(a for a in get_args(tp) if a is not type(None)))
    return tp


def _check(cls: Any, schema: dict[str, Any], where: str) -> None:
    """Recursively: model dataclass `cls` <-> object schema."""
    assert schema.get("type") == "object", where
    props: dict[str, Any] = schema.get("properties", {})
    hints = get_type_hints(cls)
    model_fields = {camel(f.name): f for f in dataclasses.fields(cls)}
    assert set(model_fields) == set(props), (
        f"{where}: model-only {sorted(set(model_fields) - set(props))}, "
        f"schema-only {sorted(set(props) - set(model_fields))}"
    )
    required = set(schema.get("required", []))
    for key, f in model_fields.items():
        p = props[key]
        here = f"{where}.{key}"
        assert p.get("description") or p.get("type") == "object" or where != "spec", here
        has_default = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        assert (key in required) == (not has_default), f"{here}: required mismatch"
        tp = _fields(hints[f.name])
        if dataclasses.is_dataclass(tp):
            _check(tp, p, here)
            if "default" in p:
                default = (
                    f.default_factory()
                    if f.default_factory is not dataclasses.MISSING
                    else f.default
                )
                assert model.to_json(default) == p["default"] or p["default"] == {}, here
            continue
        origin = get_origin(tp)
        if origin is tuple:
            (item, _) = get_args(tp)
            assert p["type"] == "array", here
            if dataclasses.is_dataclass(item):
                _check(item, p["items"], f"{here}[]")
            else:
                assert p["items"]["type"] == "string", here
            continue
        if tp is int:
            assert p["type"] == "integer", here
        elif tp is str:
            assert p["type"] == "string", here
        elif tp is bool:
            assert p["type"] == "boolean", here
        else:
            assert p["type"] == "object", here  # Mapping
        if f.default is not dataclasses.MISSING and f.default is not None:
            assert p.get("default") == f.default, (
                f"{here}: default {p.get('default')!r} != {f.default!r}"
            )
        if f.default is None or not has_default:
            assert "default" not in p, f"{here}: schema has a default the model lacks"


def test_model_and_schema_agree(spec_schema: dict[str, Any]) -> None:
    _check(ConsortiumSpec, spec_schema, "spec")


def test_object_defaults_are_complete(spec_schema: dict[str, Any]) -> None:
    # the consensus default is spelled out (the apiserver validates it against the CEL rules
    # without nested defaulting): it must equal the model's defaults exactly
    assert spec_schema["properties"]["consensus"]["default"] == model.to_json(model.ConsensusSpec())


def test_enums_match_model_validation(spec_schema: dict[str, Any]) -> None:
    p = spec_schema["properties"]
    assert p["consensus"]["properties"]["type"]["enum"] == ["bft", "raft"]
    assert p["imagePullPolicy"]["enum"] == ["Always", "IfNotPresent", "Never"]
    assert p["deletionPolicy"]["enum"] == ["Retain", "Delete"]


def test_cel_rules_exist_for_the_documented_rejections(spec_schema: dict[str, Any]) -> None:
    text = yaml.safe_dump(spec_schema)
    for needle in (
        "bft consensus needs at least 4 validators",
        "organization names must be unique",
        "chainId must be 1-64 characters",
        "genesis account balances must not be negative",
        "chainId is immutable",
        "genesis is immutable",
        "an organization cannot be removed",
    ):
        assert needle in text, needle


def _status_props(version: dict[str, Any]) -> dict[str, Any]:
    p = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert isinstance(p, dict)
    return p


def _fits(value: Any, schema: dict[str, Any], where: str) -> None:
    t = schema.get("type")
    if t == "object":
        assert isinstance(value, dict), where
        props = schema.get("properties", {})
        for k, v in value.items():
            assert k in props, f"{where}.{k} is not in the status schema"
            _fits(v, props[k], f"{where}.{k}")
    elif t == "array":
        assert isinstance(value, list), where
        for i, v in enumerate(value):
            _fits(v, schema["items"], f"{where}[{i}]")
    elif t == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), where
    elif t == "boolean":
        assert isinstance(value, bool), where
    elif t == "string":
        assert isinstance(value, str), where
        if "enum" in schema:
            assert value in schema["enum"], where


def _four_validators(n: Names, height: int, role: str) -> Observed:
    """What observe would see of organisation a's 4 validators: every pod ready, every node
    at `height` in `role`, c-a-0 the leader."""
    keys = {n.pod("a", i): bytes([i + 1]) * 32 for i in range(4)}
    vset = tuple((k, "a") for k in keys.values())
    return Observed(
        admin_public=b"\x09" * 32,
        node_keys=keys,
        genesis_validators=vset,
        genesis_hash="ab" * 32,
        pods={p: PodState(p, "a", i, True, "r1", "10.0.0.1") for i, p in enumerate(keys)},
        nodes={
            p: NodeStatus(height, role, keys["c-a-0"], vset, "synced", "x", ("a",)) for p in keys
        },
    )


def test_written_status_fits_the_schema(version: dict[str, Any]) -> None:
    sp = ConsortiumSpec.parse({"chainId": "x", "organizations": [{"name": "a", "validators": 4}]})
    n = Names("c")
    obs = _four_validators(n, 7, "follower")
    step = plan.next_step(sp, obs, n, "img")
    ctx = status.Context(n, "ns", 3, [], "2026-01-01T00:00:00Z", 2)
    st = status.build(sp, obs, step, ctx)
    schema = {"type": "object", "properties": _status_props(version)}
    _fits(st, schema, "status")
    # status.backup and status.restore are written by the backup phase (test_operator_backups)
    assert set(st) == set(_status_props(version)) - {"backup", "restore"}
    assert st["organizations"] == ["a"]
    failed = status.build(None, Observed(), None, ctx, "bad")
    _fits(failed, schema, "status")


@pytest.mark.parametrize(
    "example", sorted((ROOT / "examples").glob("consortium*.yaml")), ids=lambda p: p.name
)
def test_examples_parse(example: Path) -> None:
    doc = yaml.safe_load(example.read_text())
    assert doc["apiVersion"] == model.API_VERSION and doc["kind"] == model.KIND
    sp = ConsortiumSpec.parse(doc["spec"])
    assert len(doc["metadata"]["name"]) <= model.MAX_NAME_LEN
    if example.name == "consortium.yaml":
        assert sp.consensus.type == "bft" and sp.total_validators == 4
        assert len(sp.organizations) == 2


def _converged_status(height: int, empty_block_ms: int) -> dict[str, Any]:
    """status.build for a 4-validator chain whose every pod is ready, all nodes at `height`."""
    sp = ConsortiumSpec.parse(
        {
            "chainId": "x",
            "consensus": {"type": "bft", "emptyBlockIntervalMs": empty_block_ms},
            "organizations": [{"name": "a", "validators": 4}],
        }
    )
    n = Names("c")
    obs = _four_validators(n, height, "validator")
    # every workload in place (what plan.next_step says once the StatefulSets are observed)
    step = plan.Step(plan.Converged(), {"a": plan.OrgTarget(4, 0)}, "Running")
    return status.build(sp, obs, step, status.Context(n, "ns", 3, [], "2026-01-01T00:00:00Z", 2))


def test_ready_waits_for_the_chains_first_block() -> None:
    """The README journey once failed its first write after `kubectl wait Ready`: the status
    said "4/4 validators ready at height 0" and the chain had not committed a block. Every pod
    serving is not a chain that commits: Ready waits for a block (empty blocks are due every
    emptyBlockIntervalMs once consensus runs)."""
    conds = {c["type"]: c for c in _converged_status(0, 2000)["conditions"]}
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == (
        "False",
        "WaitingForFirstBlock",
    )
    assert conds["Progressing"]["status"] == "True"
    assert "4/4 validators serving" in conds["Ready"]["message"]
    conds = {c["type"]: c for c in _converged_status(1, 2000)["conditions"]}
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("True", "ChainReady")
    # without empty blocks an idle new chain rightly stays at height 0: Ready as before
    conds = {c["type"]: c for c in _converged_status(0, 0)["conditions"]}
    assert conds["Ready"]["status"] == "True"
