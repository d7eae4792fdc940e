"""The operator chart's RBAC is exactly what the operator calls: no verb missing (the
operator would fail with 403) and none extra (least privilege).

The required permissions are derived from the operator's code, not kept by hand:
- kube.py's Kubernetes calls, read with `ast`: `get("Kind")`, `list_objects("Kind")`,
  `get_named("Kind")` (list + get), `list_objects(kind)` in `observe` (a list of each
  kind it applied: list on every rendered kind),
  `delete("Kind")`, the `("Kind", name)` targets of `delete_consortium`, and raw
  `_call("METHOD", _path("Kind", ..., "sub"))` requests;
- `apply` (server-side apply) of everything the operator renders (the `kind:` of each
  template that kube._PATHS can address): "patch", plus "create" since applying an absent
  object creates it;
- Kopf's own needs (FRAMEWORK below): watching consortia, patching their finalizer and
  annotations, posting events, and peering when there is more than one replica;
- the kinds reconcile.WATCHED names (kube.MetadataWatch lists and watches each).
A call the derivation cannot attribute to a kind fails the test, so the table cannot drift."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import OPERATOR_CHART, ROOT, Helm, Manifest, find

pytestmark = pytest.mark.unit

PACKAGE = ROOT / "operator" / "consortium_operator"
Perms = dict[tuple[str, str], set[str]]

# Kopf's API use on behalf of the operator (not visible in kube.py)
FRAMEWORK: Perms = {
    # kopf lists + watches the handled resource and patches finalizers/progress annotations
    ("consortium.dev", "consortia"): {"list", "watch", "patch"},
}
EVENTS: Perms = {("", "events"): {"create"}}  # kopf.info / kopf.warn / kopf.event
# Grants ahead of the operator code that uses them (none now: the consortium NetworkPolicy of
# issue 7 is addressed by kube.py, so the derivation covers it). Once kube.py addresses a kind,
# its entry here is redundant (test_pending_grants_are_not_yet_derived says so).
PENDING: Perms = {}

# Kopf's scanning (unless the operator sets settings.scanning.disabled): CRDs, and namespaces
# when watching a list of namespaces; read-only
SCANNING_CLUSTER_WIDE: Perms = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"}
}
SCANNING_NAMESPACED: Perms = {**SCANNING_CLUSTER_WIDE, ("", "namespaces"): {"list", "watch"}}
PEERING_CLUSTER: Perms = {("kopf.dev", "clusterkopfpeerings"): {"list", "watch", "patch"}}
PEERING_NAMESPACED: Perms = {("kopf.dev", "kopfpeerings"): {"list", "watch", "patch"}}

# Kube methods that take the kind as a parameter: their callers are what is analysed
GENERIC = {"get", "list_objects", "get_named", "delete", "apply", "create", "_request", "_call"}
METHOD_VERBS = {"PATCH": "patch", "POST": "create", "DELETE": "delete", "PUT": "update"}


def _paths() -> dict[str, tuple[str, str]]:
    """kind -> (API group, plural), from kube._PATHS."""
    from consortium_operator import kube

    out = {}
    for kind, (prefix, plural) in kube._PATHS.items():
        parts = prefix.strip("/").split("/")
        group = "" if parts[0] == "api" else parts[1]
        out[kind] = (group, plural)
    return out


def _const(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _rendered_kinds() -> set[str]:
    kinds = set()
    for t in (PACKAGE / "templates").glob("*.j2"):
        # YAML templates' `kind: X` lines, and the JSON one's `"kind": "X"`
        kinds |= set(re.findall(r'^\s*"?kind"?:\s*"?(\w+)', t.read_text(), re.M))
    return kinds


def required_permissions() -> Perms:  # noqa: C901 -- one walk over every API call shape
    paths = _paths()
    perms: Perms = defaultdict(set)
    unattributed: list[str] = []
    lists_applied = False

    def grant(kind: str, verb: str, sub: str | None = None) -> None:
        group, plural = paths[kind]
        perms[(group, f"{plural}/{sub}" if sub else plural)].add(verb)

    for module in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(module.read_text(), filename=str(module))
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Tuple) and func.name == "delete_consortium":
                    kind = _const(node.elts[0]) if node.elts else None
                    if kind in paths:
                        grant(kind, "delete")
                if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                    continue
                attr = node.func.attr
                if ast.unparse(node.func.value).startswith("kopf"):
                    continue  # kopf.on.delete(...) and friends are decorators, not API calls
                first = node.args[0] if node.args else None
                kind = _const(first)
                if attr == "_call" and kind in METHOD_VERBS | {"GET": "get"}:
                    target = node.args[1] if len(node.args) > 1 else None
                    if (
                        isinstance(target, ast.Call)
                        and isinstance(target.func, ast.Name)
                        and target.func.id == "_path"
                    ):
                        pkind = _const(target.args[0])
                        if pkind is None:
                            if func.name not in GENERIC:
                                unattributed.append(f"{module.name}:{node.lineno}")
                            continue
                        sub = _const(target.args[3]) if len(target.args) > 3 else None
                        if kind == "GET":
                            verb = "get" if len(target.args) > 2 else "list"
                        else:
                            verb = METHOD_VERBS[kind]
                        grant(pkind, verb, sub)
                    continue
                if attr not in ("get", "list_objects", "get_named", "delete"):
                    continue
                if (
                    attr == "list_objects"
                    and isinstance(first, ast.Name)
                    and func.name == "observe"
                ):
                    lists_applied = True  # observe lists each kind it applied (drift check)
                    continue
                if kind in paths and attr == "get_named":  # one list, a get for what it lacks
                    grant(kind, "list")
                    grant(kind, "get")
                elif kind in paths:
                    grant(kind, {"get": "get", "list_objects": "list", "delete": "delete"}[attr])
                elif (
                    attr != "get"  # dict.get etc.
                    and isinstance(first, ast.Name)
                    and func.name not in GENERIC | {"delete_consortium"}
                ):
                    unattributed.append(f"{module.name}:{node.lineno} {attr}({first.id})")
    assert not unattributed, f"Kubernetes calls with a kind this test cannot see: {unattributed}"

    # server-side apply (and create-if-absent) of every rendered kind kube.py can address
    # (a template whose kind is not in kube._PATHS cannot be applied by the operator yet)
    for kind in _rendered_kinds() & set(paths):
        grant(kind, "patch")
        grant(kind, "create")
        if lists_applied:
            grant(kind, "list")
    return dict(perms)


def watched_permissions() -> Perms:
    from consortium_operator import reconcile

    return {(group, plural): {"list", "watch"} for group, _, plural in reconcile.WATCHED}


def operator_permissions() -> Perms:
    perms = _merge(required_permissions(), FRAMEWORK, PENDING, watched_permissions())
    handlers = (PACKAGE / "handlers.py").read_text()
    if re.search(r"kopf\.(info|warn|event|exception)\(", handlers):
        perms = _merge(perms, EVENTS)
    return perms


def operator_scans() -> bool:
    """Whether Kopf scans CRDs/namespaces (the operator did not disable it at startup)."""
    code = "\n".join(p.read_text() for p in sorted(PACKAGE.glob("*.py")))
    return re.search(r"scanning\.disabled\s*=\s*True", code) is None


def _merge(*tables: Mapping[tuple[str, str], Iterable[str]]) -> Perms:
    out: Perms = defaultdict(set)
    for t in tables:
        for k, v in t.items():
            out[k] |= set(v)
    return dict(out)


def _rules_to_perms(rules: Sequence[Mapping[str, Any]]) -> Perms:
    out: Perms = defaultdict(set)
    for r in rules:
        assert not r.get("resourceNames") and not r.get("nonResourceURLs"), r
        for g in r["apiGroups"]:
            for res in r["resources"]:
                out[(g, res)] |= set(r["verbs"])
    return dict(out)


def _diff(rendered: Perms, wanted: Perms) -> str:
    lines = []
    for key in sorted(set(rendered) | set(wanted)):
        have, want = rendered.get(key, set()), wanted.get(key, set())
        if have != want:
            lines.append(f"{key}: missing {sorted(want - have)} extra {sorted(have - want)}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- tests


def test_pending_grants_are_not_yet_derived() -> None:
    """A PENDING grant the operator's code now derives belongs to the derivation alone:
    delete it from PENDING."""
    req = required_permissions()
    done = {k: v for k, v in PENDING.items() if v <= req.get(k, set())}
    assert not done, f"the operator now uses {done}: remove it from PENDING in {__file__}"


def test_derivation_sees_the_operators_calls() -> None:
    """Sanity of the derivation itself: the calls we know of are found."""
    req = required_permissions()
    assert "get" in req[("", "secrets")]
    assert "list" in req[("", "pods")]
    assert {"list", "delete"} <= req[("", "persistentvolumeclaims")]
    assert req[("consortium.dev", "consortia/status")] == {"patch"}
    assert {"create", "patch", "delete"} <= req[("apps", "statefulsets")]


def test_every_kind_the_operator_creates_is_watched() -> None:
    """A rendered kind missing from reconcile.WATCHED would be polled for drift only, and a
    pass waiting on it would never be woken."""
    from consortium_operator import reconcile

    paths = _paths()
    watched = {(group, plural) for group, _, plural in reconcile.WATCHED}
    rendered = {paths[k] for k in _rendered_kinds() & set(paths)}
    assert rendered | {paths["Pod"]} <= watched, sorted(rendered | {paths["Pod"]} - watched)


def test_scanning_grant_default_follows_the_operator() -> None:
    """rbac.kopfScanning defaults to on exactly while the operator lets Kopf scan."""
    values = yaml.safe_load((OPERATOR_CHART / "values.yaml").read_text())
    assert values["rbac"]["kopfScanning"] is operator_scans(), (
        "set rbac.kopfScanning in charts/consortium-operator/values.yaml to "
        f"{operator_scans()} (the operator {'scans' if operator_scans() else 'disabled scanning'})"
    )


@pytest.mark.parametrize("replicas", [1, 2])
@pytest.mark.parametrize("scanning", [True, False])
def test_cluster_wide_rbac_matches_operator(helm: Helm, replicas: int, scanning: bool) -> None:
    docs = helm.render(
        OPERATOR_CHART, {"replicaCount": replicas, "rbac": {"kopfScanning": scanning}}
    )
    (role,) = find(docs, "ClusterRole")
    assert not find(docs, "Role")
    wanted = operator_permissions()
    if replicas > 1:
        wanted = _merge(wanted, PEERING_CLUSTER)
    if scanning:
        wanted = _merge(wanted, SCANNING_CLUSTER_WIDE)
    rendered = _rules_to_perms(role["rules"])
    assert rendered == wanted, _diff(rendered, wanted)


@pytest.mark.parametrize("replicas", [1, 2])
@pytest.mark.parametrize("scanning", [True, False])
def test_namespaced_rbac_matches_operator(helm: Helm, replicas: int, scanning: bool) -> None:
    docs = helm.render(
        OPERATOR_CHART,
        {
            "replicaCount": replicas,
            "watch": {"clusterWide": False, "namespaces": ["a", "b"]},
            "rbac": {"kopfScanning": scanning},
        },
    )
    cluster_roles = find(docs, "ClusterRole")
    if scanning:
        (scan,) = cluster_roles
        assert scan["metadata"]["name"].endswith("-scanning")
        assert _rules_to_perms(scan["rules"]) == SCANNING_NAMESPACED
        assert len(find(docs, "ClusterRoleBinding")) == 1
    else:
        assert not cluster_roles and not find(docs, "ClusterRoleBinding")
    roles: list[Manifest] = find(docs, "Role")
    assert len(roles) == 2
    wanted = operator_permissions()
    if replicas > 1:
        wanted = _merge(wanted, PEERING_NAMESPACED)
    for role in roles:
        rendered = _rules_to_perms(role["rules"])
        assert rendered == wanted, f"{role['metadata']['namespace']}:\n" + _diff(rendered, wanted)


def test_no_rbac_when_disabled(helm: Helm) -> None:
    docs = helm.render(OPERATOR_CHART, {"rbac": {"create": False}})
    for kind in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"):
        assert not find(docs, kind)


def test_derivation_flags_unknown_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A call whose kind is a variable outside the generic helpers is reported, not
    silently ignored."""
    pkg = tmp_path / "pkg"
    (pkg / "templates").mkdir(parents=True)
    (pkg / "x.py").write_text("async def sneaky(k, kind):\n    await k.delete(kind, 'ns', 'n')\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", pkg)
    with pytest.raises(AssertionError, match="cannot see"):
        required_permissions()
