"""render: golden manifests (UPDATE_GOLDEN=1 rewrites them), StrictUndefined, labels, owner
references, securityContext, probes, and the node config the node itself accepts."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from consortium_node.config import NodeConfig
from consortium_operator import pki, render
from consortium_operator.model import ConsortiumSpec, Names, Owner
from consortium_operator.plan import OrgTarget
from consortium_operator.render import Renderer
from consortium_operator.settings import Settings

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).parent / "golden"
N = Names("demo")
OWNER = Owner("demo", "chains", "0b5c2b8e-0000-4000-8000-000000000001")
SPEC_JSON: dict[str, Any] = {
    "chainId": "demo-chain",
    "organizations": [
        {
            "name": "acme",
            "validators": 2,
            "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "512Mi"}},
            "storage": {"size": "2Gi", "className": "fast"},
            "nodeSelector": {"disk": "ssd"},
            "tolerations": [
                {
                    "key": "dedicated",
                    "operator": "Equal",
                    "value": "chain",
                    "effect": "NoSchedule",
                }
            ],
        },
        {"name": "globex", "validators": 2},
    ],
}
SPEC = ConsortiumSpec.parse(SPEC_JSON)
KEYS = {N.pod(o, i): bytes([ord(o[0]), i]) * 16 for o in ("acme", "globex") for i in range(3)}
TARGETS = {"acme": OrgTarget(2, 0), "globex": OrgTarget(2, 2)}


def manifests() -> list[dict[str, Any]]:
    r = Renderer(Settings(), N, OWNER)
    return r.workloads(SPEC, TARGETS, KEYS, "ab" * 32)


def by_kind(ms: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in ms if m["kind"] == kind]


def test_golden_manifests() -> None:
    ms = manifests()
    r = Renderer(Settings(), N, OWNER)
    ms.append(r.genesis_configmap('{"chain_id":"demo-chain"}', "ab" * 32))
    ms.append(r.keys_secret("acme", {"demo-acme-0": '{"public_key":"00"}'}))
    text = yaml.safe_dump_all(ms, sort_keys=True)
    golden = GOLDEN / "workloads.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), (
        "rendered manifests changed; rerun with UPDATE_GOLDEN=1 and review"
    )


def test_every_object_is_labelled_and_owned() -> None:
    for m in manifests():
        meta = m["metadata"]
        assert meta["namespace"] == "chains"
        labels = meta["labels"]
        for k in ("name", "instance", "component", "part-of", "managed-by"):
            assert f"app.kubernetes.io/{k}" in labels, (m["kind"], k)
        (ref,) = meta["ownerReferences"]
        assert ref == {
            "apiVersion": "consortium.dev/v1alpha1",
            "kind": "Consortium",
            "name": "demo",
            "uid": OWNER.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def test_statefulset_pod_is_locked_down_and_probed() -> None:
    acme, globex = by_kind(manifests(), "StatefulSet")
    pod = acme["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["automountServiceAccountToken"] is False
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    # kubelet probes the plaintext health port: the client port wants a client certificate
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"] == {"port": render.HEALTH_PORT}
    assert {"name": "health", "containerPort": render.HEALTH_PORT, "protocol": "TCP"} in c["ports"]
    assert c["args"] == [
        "run",
        "--config",
        "/etc/consortium/config.yaml",
        "--key-file",
        "/keys/$(POD_NAME).json",
        "--name",
        "$(POD_NAME)",
        "--tls-cert-file",
        "/tls/$(POD_NAME).pem",
        "--tls-key-file",
        "/tls/$(POD_NAME).key",
    ]
    assert {m["mountPath"] for m in c["volumeMounts"]} == {
        "/data",
        "/etc/consortium",
        "/keys",
        "/tls",
        "/tmp",
    }
    assert all(m.get("readOnly") for m in c["volumeMounts"] if m["mountPath"] in ("/keys", "/tls"))
    assert all("subPath" not in m for m in c["volumeMounts"])  # kubelet refreshes rotated certs
    tls_vol = next(v for v in pod["volumes"] if v["name"] == "tls")
    assert tls_vol["secret"]["secretName"] == "demo-acme-tls"
    assert c["resources"] == {"requests": {"cpu": "100m"}, "limits": {"memory": "512Mi"}}
    assert pod["nodeSelector"] == {"disk": "ssd"} and pod["tolerations"][0]["key"] == "dedicated"
    (vct,) = acme["spec"]["volumeClaimTemplates"]
    assert vct["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert vct["spec"]["storageClassName"] == "fast"
    assert "storageClassName" not in globex["spec"]["volumeClaimTemplates"][0]["spec"]
    assert acme["spec"]["serviceName"] == "demo-peers"
    assert acme["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 0
    assert globex["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 2
    assert set(acme["spec"]["selector"]["matchLabels"].items()) <= set(
        acme["spec"]["template"]["metadata"]["labels"].items()
    )
    fp = acme["metadata"]["annotations"][render.FINGERPRINT]
    assert acme["spec"]["template"]["metadata"]["annotations"][render.FINGERPRINT] == fp
    assert fp == SPEC.pod_fingerprint(SPEC.organizations[0], Settings().node_image)


def test_services_and_pdb() -> None:
    ms = manifests()
    peers, client = by_kind(ms, "Service")
    assert peers["spec"]["clusterIP"] == "None" and peers["spec"]["publishNotReadyAddresses"]
    assert {p["port"] for p in peers["spec"]["ports"]} == {7050, 7051, 9100}
    assert [p["port"] for p in client["spec"]["ports"]] == [7050]
    (pdb,) = by_kind(ms, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1  # 4 bft validators: f = 1


def test_node_config_is_accepted_by_the_node() -> None:
    (cm,) = [m for m in by_kind(manifests(), "ConfigMap") if m["metadata"]["name"] == "demo-config"]
    assert set(cm["data"]) == {"acme.yaml", "globex.yaml"}
    cfg = NodeConfig.from_dict(yaml.safe_load(cm["data"]["acme.yaml"]))
    assert cfg.organization == "acme" and cfg.listen == "0.0.0.0:7050"
    assert cfg.peer_listen == "0.0.0.0:7051" and cfg.metrics_listen == "0.0.0.0:9100"
    assert str(cfg.data_dir) == "/data" and str(cfg.genesis_file) == "/etc/consortium/genesis.json"
    # peers: every pod the targets run (acme 0-1, globex 0-1), never a pod without a key
    assert [p.address.split(".")[0] for p in cfg.peers] == [
        "demo-acme-0",
        "demo-acme-1",
        "demo-globex-0",
        "demo-globex-1",
    ]
    assert cfg.peers[0].address == "demo-acme-0.demo-peers.chains.svc.cluster.local:7051"
    assert cfg.peers[0].node_id == KEYS["demo-acme-0"]
    assert cfg.consensus.election_ticks == 50
    # TLS on (the default): the config names the first pod's files (each pod overrides them
    # with --tls-cert-file/--tls-key-file), plaintext health for kubelet, no public port
    assert cfg.tls is not None and str(cfg.tls.cert_file) == "/tls/demo-acme-0.pem"
    assert str(cfg.tls.key_file) == "/tls/demo-acme-0.key" and cfg.tls.ca_file is None
    assert cfg.health_listen == f"0.0.0.0:{render.HEALTH_PORT}" and cfg.public_listen is None


def _with_security(**security: Any) -> ConsortiumSpec:
    raw = {
        "chainId": "demo-chain",
        "organizations": [{"name": "acme", "validators": 2}, {"name": "globex", "validators": 2}],
        "security": security,
    }
    return ConsortiumSpec.parse(raw)


def test_tls_off_renders_a_plaintext_node() -> None:
    spec = _with_security(tls=False)
    ms = Renderer(Settings(), N, OWNER).workloads(spec, TARGETS, KEYS, "ab")
    cfg_text = by_kind(ms, "ConfigMap")[0]["data"]["acme.yaml"]
    cfg = NodeConfig.from_dict(yaml.safe_load(cfg_text))
    assert cfg.tls is None and cfg.health_listen == f"0.0.0.0:{render.HEALTH_PORT}"
    (c,) = by_kind(ms, "StatefulSet")[0]["spec"]["template"]["spec"]["containers"]
    assert not any(a.startswith("--tls") for a in c["args"])
    assert "/tls" not in {m["mountPath"] for m in c["volumeMounts"]}


def test_public_reads_open_the_read_only_port() -> None:
    spec = _with_security(publicReads=True)
    ms = Renderer(Settings(), N, OWNER).workloads(spec, TARGETS, KEYS, "ab")
    cfg = NodeConfig.from_dict(yaml.safe_load(by_kind(ms, "ConfigMap")[0]["data"]["acme.yaml"]))
    assert cfg.public_listen == f"0.0.0.0:{render.PUBLIC_PORT}"
    _, client = by_kind(ms, "Service")
    assert [p["port"] for p in client["spec"]["ports"]] == [7050, render.PUBLIC_PORT]
    (c,) = by_kind(ms, "StatefulSet")[0]["spec"]["template"]["spec"]["containers"]
    assert {"name": "public", "containerPort": render.PUBLIC_PORT, "protocol": "TCP"} in c["ports"]
    (np,) = by_kind(ms, "NetworkPolicy")
    client_rule = np["spec"]["ingress"][1]
    assert {p["port"] for p in client_rule["ports"]} == {7050, render.PUBLIC_PORT}


def test_node_certificate_names_every_way_a_client_dials() -> None:
    r = Renderer(Settings(), N, OWNER)
    got = r.node_dns_names("demo-acme-0")
    for name in (
        "demo-acme-0.demo-peers",
        "demo-acme-0.demo-peers.chains.svc",
        "demo-acme-0.demo-peers.chains.svc.cluster.local",
        "demo-client",
        "demo-client.chains",
        "demo-client.chains.svc.cluster.local",
        "localhost",
    ):
        assert name in got
    assert r.server_name("demo-acme-0") in got


def test_client_secret_is_a_cli_tls_directory() -> None:
    r = Renderer(Settings(), N, OWNER)
    s = r.client_secret("demo-acme-client", "acme", b"CAS", pki.Issued(b"CERT", b"KEY"))
    assert set(s["data"]) == {"ca.pem", "client.pem", "client.key"}
    assert s["metadata"]["labels"]["app.kubernetes.io/component"] == "client-tls"
    assert s["immutable"] is False  # rotated in place


def test_secrets_and_genesis_configmap() -> None:
    r = Renderer(Settings(), N, OWNER)
    s = r.keys_secret("acme", {"demo-acme-1": "k1", "demo-acme-0": "k0"})
    assert list(s["data"]) == ["demo-acme-0.json", "demo-acme-1.json"] and s["type"] == "Opaque"
    assert r.admin_secret("k")["immutable"] is True
    g = r.genesis_configmap("{}", "ff")
    assert g["immutable"] is True and g["data"] == {"genesis.json": "{}"}
    assert g["metadata"]["annotations"][render.GENESIS_HASH] == "ff"


def test_strict_undefined() -> None:
    env = render.environment()
    assert env.undefined is jinja2.StrictUndefined
    with pytest.raises(jinja2.UndefinedError):
        env.get_template("pdb.yaml.j2").render(name="x")


def test_settings_are_an_input_not_a_global() -> None:
    custom = Renderer(Settings(node_image="mirror/node:1", cluster_domain="corp.local"), N, OWNER)
    ms = custom.workloads(SPEC, TARGETS, KEYS, "ab")
    sts = by_kind(ms, "StatefulSet")[0]
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == "mirror/node:1"
    cm = by_kind(ms, "ConfigMap")[0]
    assert "svc.corp.local:7051" in cm["data"]["acme.yaml"]


def test_a_render_of_the_same_inputs_parses_no_yaml_and_gives_equal_fresh_manifests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """render._Memo: the second render of equal inputs loads and dumps no YAML and gives
    manifests equal to the first (which the golden test pins), as fresh objects; another
    image re-renders only the StatefulSets; a Secret is never memoised."""
    monkeypatch.setattr(render, "_MEMO", render._Memo())
    first = manifests()
    calls: list[str] = []
    load_all, safe_dump = yaml.load_all, yaml.safe_dump

    def counting_load(text: str, **kw: Any) -> Any:
        calls.append("load")
        return load_all(text, **kw)

    def counting_dump(doc: Any, **kw: Any) -> Any:
        calls.append("dump")
        return safe_dump(doc, **kw)

    monkeypatch.setattr(yaml, "load_all", counting_load)
    monkeypatch.setattr(yaml, "safe_dump", counting_dump)
    second = manifests()
    assert second == first and calls == []
    second[0]["metadata"]["name"] = "changed by a caller"
    assert manifests() == first  # what a caller does to its copy is not memoised
    r = Renderer(Settings(), N, OWNER)
    rendered: list[str] = []
    text = Renderer._text

    def counting_text(self: Renderer, template: str, **values: Any) -> str:
        rendered.append(template)
        return text(self, template, **values)

    monkeypatch.setattr(Renderer, "_text", counting_text)
    moved = r.workloads(
        ConsortiumSpec.parse({**SPEC_JSON, "image": "x/node:2"}), TARGETS, KEYS, "ab" * 32
    )
    sts = by_kind(moved, "StatefulSet")
    assert rendered == ["statefulset.json.j2"] * len(sts) and calls == []  # JSON, not YAML
    assert {s["spec"]["template"]["spec"]["containers"][0]["image"] for s in sts} == {"x/node:2"}
    calls.clear()
    r.keys_secret("acme", {"demo-acme-0": "k0"})
    r.keys_secret("acme", {"demo-acme-0": "k0"})
    assert calls == ["load", "load"]


def test_the_render_memo_keeps_at_most_its_entries_and_skips_what_is_not_json() -> None:
    memo = render._Memo(entries=2)
    keys = [memo.key("t", {"n": i}) for i in range(3)]
    for k in keys:
        memo.put(k, "x")
    assert memo.get(keys[0]) is None and memo.get(keys[2]) == "x"
    assert memo.key("t", {"n": object()}) is None  # not JSON: never memoised
    memo.put(memo.key("t", {}), "y" * (render._Memo.MAX_TEXT + 1))
    assert memo.get(memo.key("t", {})) is None


def test_the_statefulset_template_is_json_in_every_combination_of_its_optional_parts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """statefulset.json.j2 brings its own commas for its optional list items (restore init
    step, TLS, public port, own CA, storage class): every combination is one JSON document
    with exactly the parts asked for."""
    seen: list[dict[str, Any]] = []
    one = Renderer._one

    def capture(self: Renderer, template: str, **values: Any) -> Any:
        if template == "statefulset.json.j2":
            seen.append(values)
        return one(self, template, **values)

    monkeypatch.setattr(Renderer, "_one", capture)
    manifests()
    template = render.environment().get_template("statefulset.json.j2")
    restore = {"command": ["consortium", "backup", "restore"], "claim_name": "backups"}
    for r, tls, pub, own, sc in itertools.product(
        [None, restore], [None, "/tls"], [None, 7053], [None, "/own"], ["", "fast"]
    ):
        values = seen[0] | {
            "restore": r,
            "tls_dir": tls,
            "public_port": pub,
            "own_ca_dir": own,
            "storage_class": sc,
        }
        sts = json.loads(template.render(**values))
        pod = sts["spec"]["template"]["spec"]
        volumes = [v["name"] for v in pod["volumes"]]
        mounts = [m["name"] for m in pod["containers"][0]["volumeMounts"]]
        assert ("initContainers" in pod) == bool(r) and ("restore" in volumes) == bool(r)
        assert ("tls" in volumes) == ("tls" in mounts) == bool(tls)
        assert ("--tls-cert-file" in pod["containers"][0]["args"]) == bool(tls)
        assert ("own-ca" in volumes) == ("own-ca" in mounts) == bool(own)
        ports = [p["name"] for p in pod["containers"][0]["ports"]]
        assert ("public" in ports) == bool(pub)
        claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
        assert claim.get("storageClassName") == (sc or None)
