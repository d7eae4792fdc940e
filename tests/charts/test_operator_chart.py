"""The consortium-operator chart with the real helm binary: lint, render with default and
non-default values, structural checks on every object (kubeconform-like, in Python), the
values schema rejecting wrong values, and the rendered Deployment accepted by the operator's
own entrypoint."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import (
    ALL_CHARTS,
    OPERATOR_CHART,
    ROOT,
    Helm,
    Manifest,
    find,
    one,
)

pytestmark = pytest.mark.unit

NAMESPACE = "ops"
RELEASE = "rel"
FULLNAME = "rel-consortium-operator"

# value sets every structural check runs on
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watch": {"clusterWide": False, "namespaces": ["team-a", "team-b"]}},
    "namespaced-release-ns": {"watch": {"clusterWide": False, "namespaces": []}},
    "peering-clusterwide": {"replicaCount": 2},
    "peering-namespaced": {
        "replicaCount": 3,
        "watch": {"clusterWide": False, "namespaces": ["team-a"]},
        "peering": {"name": "consortium"},
    },
    "everything": {
        "image": {"repository": "registry.local/consortium/operator", "tag": "1.2.3"},
        "nodeImage": {"repository": "registry.local/consortium/node", "tag": "1.2.3"},
        "imagePullSecrets": [{"name": "regcred"}],
        "serviceAccount": {"name": "consortium", "annotations": {"a.example/b": "c"}},
        "metrics": {"enabled": True, "serviceMonitor": {"enabled": True, "labels": {"r": "p"}}},
        "nodeMetrics": {"serviceMonitor": {"enabled": True}},
        "grafanaDashboard": {"enabled": True},
        "operator": {
            "verbose": False,
            "debug": True,
            "logFormat": "json",
            "nodeAddress": "dns",
            "clusterDomain": "example.internal",
            "retrySeconds": 2.5,
            "maxLag": 5,
            "extraEnv": [{"name": "EXTRA", "value": "1"}],
        },
        "podLabels": {"team": "chain"},
        "podAnnotations": {"a.example/b": "c"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
        "priorityClassName": "system-cluster-critical",
        "health": {"port": 8081},
    },
    "no-rbac-no-sa": {"rbac": {"create": False}, "serviceAccount": {"create": False}},
}

# kind -> apiVersion (what a kubeconform run against the Kubernetes schemas would accept)
API_VERSIONS = {
    "ServiceAccount": "v1",
    "Service": "v1",
    "ConfigMap": "v1",
    "Deployment": "apps/v1",
    "ClusterRole": "rbac.authorization.k8s.io/v1",
    "ClusterRoleBinding": "rbac.authorization.k8s.io/v1",
    "Role": "rbac.authorization.k8s.io/v1",
    "RoleBinding": "rbac.authorization.k8s.io/v1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "ClusterKopfPeering": "kopf.dev/v1",
    "KopfPeering": "kopf.dev/v1",
}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"}
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
)
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def render(helm: Helm, values: Mapping[str, Any] | None = None) -> list[Manifest]:
    return helm.render(OPERATOR_CHART, values, release=RELEASE, namespace=NAMESPACE)


def container(docs: Sequence[Manifest]) -> dict[str, Any]:
    dep = one(docs, "Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return dict(c)


def env_of(c: Mapping[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in c.get("env", [])}


# --------------------------------------------------------------------------- lint


@pytest.mark.parametrize("chart", ALL_CHARTS, ids=lambda p: p.name)
def test_helm_lint_strict(helm: Helm, chart: Path) -> None:
    out = helm.run("lint", "--strict", str(chart))
    assert "0 chart(s) failed" in out.stdout


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_with_values(helm: Helm, name: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(VALUE_SETS[name]))
    helm.run("lint", "--strict", str(OPERATOR_CHART), "--values", str(values))


# --------------------------------------------------------------------------- defaults


def test_defaults(helm: Helm) -> None:
    docs = render(helm)
    assert sorted(d["kind"] for d in docs) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "ServiceAccount",
    ]
    dep = one(docs, "Deployment", FULLNAME)
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    c = container(docs)
    assert c["image"] == "consortium/operator:dev"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert "--standalone" in c["args"]
    assert not any(a.startswith(("--peering", "--namespace")) for a in c["args"])
    assert "--liveness=http://0.0.0.0:8080/healthz" in c["args"]
    assert env_of(c)["CONSORTIUM_NODE_IMAGE"] == "consortium/node:dev"


def test_security_and_resources(helm: Helm) -> None:
    docs = render(helm)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    c = container(docs)
    psc, sc = pod["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
    assert psc["seccompProfile"]["type"] == "RuntimeDefault"
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind]), kind
    # a writable /tmp despite the read-only root filesystem
    assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"])


def test_probes_use_kopf_liveness_endpoint(helm: Helm) -> None:
    c = container(render(helm, {"health": {"port": 8181}}))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["health"] == 8181
    assert "--liveness=http://0.0.0.0:8181/healthz" in c["args"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_image_values(helm: Helm) -> None:
    c = container(render(helm, VALUE_SETS["everything"]))
    assert c["image"] == "registry.local/consortium/operator:1.2.3"
    env = env_of(c)
    assert env["CONSORTIUM_NODE_IMAGE"] == "registry.local/consortium/node:1.2.3"
    assert env["CONSORTIUM_NODE_ADDRESS"] == "dns"
    assert env["CONSORTIUM_CLUSTER_DOMAIN"] == "example.internal"
    assert env["CONSORTIUM_RETRY_SECONDS"] == "2.5"
    assert env["CONSORTIUM_MAX_LAG"] == "5"
    assert env["EXTRA"] == "1"
    assert "--debug" in c["args"] and "--verbose" not in c["args"]
    assert "--log-format=json" in c["args"]


def test_env_names_are_read_by_the_operator(helm: Helm) -> None:
    """Every CONSORTIUM_* variable the chart sets is one settings.py reads."""
    source = (ROOT / "operator" / "consortium_operator" / "settings.py").read_text()
    read = set(re.findall(r'env\.get\("(CONSORTIUM_[A-Z_]+)"', source))
    for name in VALUE_SETS:
        env = env_of(container(render(helm, VALUE_SETS[name])))
        ours = {k for k in env if k.startswith("CONSORTIUM_")}
        assert ours <= read, f"{name}: the operator does not read {sorted(ours - read)}"


# --------------------------------------------------------------------------- watching / peering


def test_namespaced_watch(helm: Helm) -> None:
    docs = render(helm, VALUE_SETS["namespaced"])
    # nothing cluster-scoped by default; with kopfScanning only Kopf's read-only grant
    assert not find(docs, "ClusterRole")
    (scan,) = find(
        render(helm, {**VALUE_SETS["namespaced"], "rbac": {"kopfScanning": True}}), "ClusterRole"
    )
    assert all(set(r["verbs"]) <= {"list", "watch"} for r in scan["rules"])
    roles = find(docs, "Role")
    bindings = find(docs, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for b in bindings:
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": "ops"}]
    c = container(docs)
    assert "--namespace=team-a" in c["args"] and "--namespace=team-b" in c["args"]


def test_namespaced_watch_defaults_to_release_namespace(helm: Helm) -> None:
    docs = render(helm, VALUE_SETS["namespaced-release-ns"])
    (role,) = find(docs, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert f"--namespace={NAMESPACE}" in container(docs)["args"]


def test_peering_cluster_wide(helm: Helm) -> None:
    docs = render(helm, VALUE_SETS["peering-clusterwide"])
    dep = one(docs, "Deployment")
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    c = container(docs)
    assert "--standalone" not in c["args"]
    assert f"--peering={FULLNAME}" in c["args"]
    one(docs, "ClusterKopfPeering", FULLNAME)
    assert any(r["resources"] == ["clusterkopfpeerings"] for r in one(docs, "ClusterRole")["rules"])
    assert "POD_ID" in {e["name"] for e in c["env"]}  # kopf's peer identity


def test_peering_namespaced(helm: Helm) -> None:
    docs = render(helm, VALUE_SETS["peering-namespaced"])
    assert "--peering=consortium" in container(docs)["args"]
    peering = one(docs, "KopfPeering", "consortium")
    assert peering["metadata"]["namespace"] == "team-a"
    assert not find(docs, "ClusterKopfPeering")
    (role,) = find(docs, "Role")
    assert any(r["resources"] == ["kopfpeerings"] for r in role["rules"])


def test_kopf_peering_crds_match_kopf(helm: Helm) -> None:
    """crds/ carries Kopf's peering CRDs under the group/plural Kopf looks for."""
    from kopf._cogs.structs import references

    docs = helm.render(OPERATOR_CHART, extra=["--include-crds"])
    crds = {d["spec"]["names"]["plural"]: d for d in find(docs, "CustomResourceDefinition")}
    for sel, scope in (
        (references.CLUSTER_PEERINGS_K, "Cluster"),
        (references.NAMESPACED_PEERINGS_K, "Namespaced"),
    ):
        crd = crds[str(sel.any_name)]
        assert crd["spec"]["group"] == sel.group
        assert crd["spec"]["scope"] == scope
        assert [v["name"] for v in crd["spec"]["versions"]] == [sel.version]


# --------------------------------------------------------------------------- metrics


def test_metrics_off_by_default(helm: Helm) -> None:
    docs = render(helm)
    assert not find(docs, "Service") and not find(docs, "ServiceMonitor")
    assert not any(a.startswith("--metrics") for a in container(docs)["args"])


def test_metrics_service_and_monitors(helm: Helm) -> None:
    docs = render(helm, VALUE_SETS["everything"])
    svc = one(docs, "Service", f"{FULLNAME}-metrics")
    c = container(docs)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics" and "metrics" in ports
    assert f"--metrics-port={ports['metrics']}" in c["args"]
    own = one(docs, "ServiceMonitor", FULLNAME)
    assert own["metadata"]["labels"]["r"] == "p"
    sel = own["spec"]["selector"]["matchLabels"]
    assert sel.items() <= svc["metadata"]["labels"].items()
    nodes = one(docs, "ServiceMonitor", f"{FULLNAME}-nodes")
    assert nodes["spec"]["namespaceSelector"] == {"any": True}
    assert nodes["spec"]["endpoints"][0]["port"] == "metrics"


def test_node_service_monitor_selects_the_operators_peers_service() -> None:
    """The node ServiceMonitor's selector matches the labels the operator puts on the peers
    Service, whose ports include "metrics"."""
    from consortium_operator.model import Names

    labels = Names("demo").labels("peers")
    chart = (OPERATOR_CHART / "templates" / "node-servicemonitor.yaml").read_text()
    block = chart.split("matchLabels:")[1].split("namespaceSelector")[0]
    wanted = dict(
        line.strip().split(": ", 1) for line in block.strip().splitlines() if ": " in line
    )
    assert wanted.items() <= labels.items()
    services = (
        ROOT / "operator" / "consortium_operator" / "templates" / "services.yaml.j2"
    ).read_text()
    assert "name: metrics" in services.split("---")[0]


def test_grafana_dashboard_uses_node_metrics(helm: Helm) -> None:
    docs = render(helm, VALUE_SETS["everything"])
    cm = one(docs, "ConfigMap", f"{FULLNAME}-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["consortium-nodes.json"])
    source = (ROOT / "node" / "consortium_node" / "metrics.py").read_text()
    families = set(re.findall(r'"(consortium_[a-z_]+)"', source))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs
    for expr in exprs:
        for metric in re.findall(r"\b(consortium_[a-z_]+)", expr):
            base = re.sub(r"_(total|bucket|sum|count)$", "", metric)
            assert base in families, f"{metric} is not a node metric"


def test_chart_flags_are_accepted_by_the_operator(helm: Helm) -> None:
    """Every value set renders args and env that the operator's real entrypoint parses
    into the intended kopf.run call (kopf.run itself is replaced)."""
    for name, values in VALUE_SETS.items():
        c = container(render(helm, values))
        proc = _operator_dry_run(c["args"], env_of(c))
        assert proc.returncode == 0, f"{name}: {proc.stderr}"
        kw = json.loads(proc.stdout.strip().splitlines()[-1])
        watch = values.get("watch", {})
        replicas = values.get("replicaCount", 1)
        assert kw["clusterwide"] is watch.get("clusterWide", True), name
        if not kw["clusterwide"]:
            assert kw["namespaces"] == (watch.get("namespaces") or [NAMESPACE]), name
        assert kw["standalone"] is (True if replicas == 1 else None), name
        assert (kw["peering_name"] is None) is (replicas == 1), name
        assert kw["liveness_endpoint"].endswith("/healthz"), name


def test_metrics_flag_supported(helm: Helm) -> None:
    c = container(render(helm, {"metrics": {"enabled": True}}))
    proc = _operator_dry_run(c["args"], env_of(c))
    assert proc.returncode == 0, proc.stderr
    assert "--metrics-port=9090" in c["args"]


_DRY_RUN = """
import json, sys
import kopf
kopf.run = lambda **kw: print(json.dumps(kw, default=str))
from consortium_operator.__main__ import main
main(sys.argv[1:])
"""


def _operator_dry_run(
    args: Sequence[str], env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CONSORTIUM_")}
    return subprocess.run(
        [sys.executable, "-c", _DRY_RUN, *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --------------------------------------------------------------------------- structure


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_structure(helm: Helm, name: str) -> None:
    """kubeconform-like checks on every rendered object."""
    docs = render(helm, VALUE_SETS[name])
    seen: set[tuple[str, str, str]] = set()
    for d in docs:
        kind = d.get("kind")
        assert kind in API_VERSIONS, f"unexpected kind {kind}"
        assert d.get("apiVersion") == API_VERSIONS[kind], kind
        meta = d.get("metadata") or {}
        obj = f"{kind}/{meta.get('name')}"
        assert isinstance(meta.get("name"), str) and DNS1123.match(meta["name"]), obj
        assert len(meta["name"]) <= 63, obj
        if kind in CLUSTER_SCOPED:
            assert "namespace" not in meta, obj
        else:
            assert DNS1123.match(meta.get("namespace", "")), f"{obj} has no namespace"
        labels = meta.get("labels") or {}
        for label in STANDARD_LABELS:
            assert labels.get(label), f"{obj} lacks label {label}"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        for k, v in {**labels, **(meta.get("annotations") or {})}.items():
            assert isinstance(v, str), f"{obj}: {k} is not a string"
        key = (kind, meta.get("namespace", ""), meta["name"])
        assert key not in seen, f"duplicate {key}"
        seen.add(key)
    _check_references(docs)


def _check_references(docs: Sequence[Manifest]) -> None:
    dep = one(docs, "Deployment")
    pod = dep["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (c,) = pod["spec"]["containers"]
    port_names = {p["name"] for p in c["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["port"] in port_names
    volumes = {v["name"] for v in pod["spec"].get("volumes", [])}
    assert {m["name"] for m in c.get("volumeMounts", [])} <= volumes
    sa = pod["spec"]["serviceAccountName"]
    if find(docs, "ServiceAccount"):
        one(docs, "ServiceAccount", sa)
    for svc in find(docs, "Service"):
        assert svc["spec"]["selector"].items() <= pod_labels.items()
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in port_names
    for b in find(docs, "RoleBinding") + find(docs, "ClusterRoleBinding"):
        ref = b["roleRef"]
        targets = [
            r
            for r in find(docs, ref["kind"], ref["name"])
            if ref["kind"] == "ClusterRole"
            or r["metadata"]["namespace"] == b["metadata"]["namespace"]
        ]
        assert len(targets) == 1, f"roleRef of {b['metadata']} does not resolve"
        assert b["subjects"] == [
            {"kind": "ServiceAccount", "name": sa, "namespace": dep["metadata"]["namespace"]}
        ]
    for role in find(docs, "Role") + find(docs, "ClusterRole"):
        for rule in role["rules"]:
            assert rule["verbs"] and "*" not in rule["verbs"], rule
            assert "*" not in rule["resources"] and "*" not in rule["apiGroups"], rule


# --------------------------------------------------------------------------- schema

BAD_VALUES: list[tuple[str, dict[str, Any]]] = [
    ("replicaCount-string", {"replicaCount": "two"}),
    ("replicaCount-zero", {"replicaCount": 0}),
    ("replicaCount-float", {"replicaCount": 1.5}),
    ("pullPolicy-enum", {"image": {"pullPolicy": "Sometimes"}}),
    ("image-tag-number", {"image": {"tag": 1}}),
    ("image-tag-empty", {"image": {"tag": ""}}),
    ("nodeImage-unknown-key", {"nodeImage": {"name": "x"}}),
    ("clusterWide-string", {"watch": {"clusterWide": "yes"}}),
    ("namespaces-string", {"watch": {"namespaces": "team-a"}}),
    ("namespaces-invalid-name", {"watch": {"namespaces": ["Team_A"]}}),
    ("nodeAddress-enum", {"operator": {"nodeAddress": "ip"}}),
    ("logFormat-enum", {"operator": {"logFormat": "xml"}}),
    ("maxLag-negative", {"operator": {"maxLag": -1}}),
    ("retrySeconds-string", {"operator": {"retrySeconds": "5s"}}),
    ("retrySeconds-zero", {"operator": {"retrySeconds": 0}}),
    ("health-port-range", {"health": {"port": 70000}}),
    ("metrics-enabled-string", {"metrics": {"enabled": "true"}}),
    ("metrics-interval", {"metrics": {"serviceMonitor": {"interval": "30 seconds"}}}),
    ("resources-list", {"resources": {"limits": {"memory": ["1Gi"]}}}),
    ("annotations-number", {"serviceAccount": {"annotations": {"a": 1}}}),
    ("unknown-key", {"replicas": 2}),
    ("tolerations-object", {"tolerations": {"key": "k"}}),
    ("rbac-create-string", {"rbac": {"create": "no"}}),
    ("kopfScanning-string", {"rbac": {"kopfScanning": "off"}}),
]


@pytest.mark.parametrize("values", [v for _, v in BAD_VALUES], ids=[n for n, _ in BAD_VALUES])
def test_schema_rejects(helm: Helm, values: dict[str, Any]) -> None:
    proc = helm.template(OPERATOR_CHART, values, check=False)
    assert proc.returncode != 0, f"accepted {values}"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr


# --------------------------------------------------------------------------- values.yaml, NOTES


def _undocumented_keys(text: str) -> list[str]:
    """Keys of a values.yaml with no comment: a key is documented by a comment line right
    above it (or an inline comment), or by an ancestor's comment when no key below that
    ancestor has a comment of its own (the ancestor documents the block as a whole)."""
    nodes: list[dict[str, Any]] = []  # {"path", "indent", "commented", "parent"}
    stack: list[dict[str, Any]] = []
    pending = False
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#"):
            pending = True
            continue
        if not stripped:
            pending = False
            continue
        line = raw.replace("- ", "  ", 1) if stripped.startswith("- ") else raw
        m = re.match(r"^(\s*)([A-Za-z_][\w./-]*):(\s|$)", line)
        if not m:
            continue
        indent = len(m.group(1))
        while stack and stack[-1]["indent"] >= indent:
            stack.pop()
        parent = stack[-1] if stack else None
        node = {
            "path": ((parent["path"] + ".") if parent else "") + m.group(2),
            "indent": indent,
            "commented": pending or " #" in line.split(":", 1)[1],
            "parent": parent,
        }
        nodes.append(node)
        stack.append(node)
        pending = False

    def descendants_commented(n: dict[str, Any]) -> bool:
        return any(o["commented"] and _is_below(o, n) for o in nodes if o is not n)

    missing = []
    for n in nodes:
        if n["commented"]:
            continue
        a = n["parent"]
        covered = False
        while a is not None:
            if a["commented"] and not descendants_commented(a):
                covered = True
                break
            a = a["parent"]
        if not covered:
            missing.append(n["path"])
    return missing


def _is_below(node: dict[str, Any], ancestor: dict[str, Any]) -> bool:
    p = node["parent"]
    while p is not None:
        if p is ancestor:
            return True
        p = p["parent"]
    return False


@pytest.mark.parametrize(
    "chart", [c for c in ALL_CHARTS if (c / "values.yaml").exists()], ids=lambda p: p.name
)
def test_every_value_is_commented(chart: Path) -> None:
    assert _undocumented_keys((chart / "values.yaml").read_text()) == []


def test_undocumented_key_detection() -> None:
    text = "# -- a\na: 1\nb:\n  # -- c\n  c: 2\n  d: 3\n# -- e block\ne:\n  f: 1\n"
    assert _undocumented_keys(text) == ["b", "b.d"]


def _notes(helm: Helm, tmp_path: Path, values: Mapping[str, Any]) -> str:
    """NOTES.txt rendered (helm template skips it): a copy of the chart with the notes
    wrapped into a ConfigMap."""
    chart = tmp_path / "chart"
    shutil.copytree(OPERATOR_CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "_notes.tpl").write_text(
        '{{- define "test.notes" -}}\n' + notes + "\n{{- end }}\n"
    )
    (chart / "templates" / "notes-cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |-\n"
        '{{ include "test.notes" . | indent 4 }}\n'
    )
    docs = helm.render(chart, values, release=RELEASE, namespace=NAMESPACE)
    return str(one(docs, "ConfigMap", "notes")["data"]["notes"])


def test_notes_tell_how_to_apply_the_first_consortium(helm: Helm, tmp_path: Path) -> None:
    text = _notes(helm, tmp_path / "a", {})
    assert "kubectl apply -f examples/consortium.yaml" in text
    assert "kubectl wait --for=condition=Ready consortium/demo" in text
    assert (ROOT / "examples" / "consortium.yaml").exists()
    assert "name: demo" in (ROOT / "examples" / "consortium.yaml").read_text()
    namespaced = _notes(helm, tmp_path / "b", VALUE_SETS["namespaced"])
    assert "kubectl apply -n team-a -f examples/consortium.yaml" in namespaced
    assert "watching team-a, team-b" in namespaced
