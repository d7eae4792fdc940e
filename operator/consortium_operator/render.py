"""Rendering: the only jinja2 user. Turns (spec, names, owner, plan targets, settings) into
Kubernetes manifests (plain dicts) from the templates in templates/ beside this file.

Rules: the environment uses `StrictUndefined` (a missing value is an error, never an empty
string); templates substitute and loop, values are inserted with `tojson` (valid YAML flow
scalars, no quoting bugs); the StatefulSet's template is JSON (statefulset.json.j2: it is
rendered again on every spec change: 2.1 ms to parse as YAML, 0.03 ms as JSON); every
decision (names, labels, numbers, which keys exist) is made here in Python and passed in,
and settings come in as an argument, never from globals. Every object carries the
app.kubernetes.io/* labels and a controller owner reference to its Consortium, so deleting
the Consortium garbage-collects what the finalizer does not."""

from __future__ import annotations

import base64
import collections
import functools
import hashlib
import ipaddress
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import jinja2
import yaml
from consortium_node.config import Peer
from consortium_node.provision import nodeconfig
from consortium_node.provision.nodeconfig import Layout

from .model import (
    API_VERSION,
    CLIENT_PORT,
    KIND,
    METRICS_PORT,
    NODE_UID,
    PEER_PORT,
    ConsortiumSpec,
    Names,
    OrganizationSpec,
    Owner,
    to_json,
)
from .pki import Issued
from .plan import OrgTarget
from .settings import Settings

TEMPLATES = Path(__file__).parent / "templates"
DATA_DIR = "/data"
CONFIG_PATH = "/etc/consortium/config.yaml"
GENESIS_PATH = "/etc/consortium/genesis.json"
FINGERPRINT = "consortium.dev/pod-fingerprint"
GENESIS_HASH = "consortium.dev/genesis-hash"
ADMIN_KEY_FILE = "admin.json"
# the StatefulSet's volumeClaimTemplates name is "data": pod P's ledger volume is PVC data-P
LEDGER_CLAIM = "data-"
MEMBER_KEY_FILE = "key.json"  # an organisation's member key, in its client Secret
TLS_DIR = "/tls"  # the organisation's TLS Secret: <pod>.pem / <pod>.key, refreshed by kubelet
# A joining organisation's own CA certificate (ca.pem of its CA Secret, never ca.key): its
# nodes trust it besides the chain's CAs, which do not list it until it is admitted
OWN_CA_DIR = "/tls-own-ca"
PUBLIC_PORT = CLIENT_PORT + 2  # read-only API without client certificate (publicReads)
HEALTH_PORT = CLIENT_PORT + 3  # plaintext grpc.health.v1 for kubelet probes
BACKUP_DIR = "/backups"  # the backup destination claim in the backup pod (<consortium>/ in it)
RESTORE_DIR = "/restore"  # the restoreFrom claim in a node pod's restore init step
BACKUP_DEADLINE_SECONDS = 3600  # one backup run at most

Manifest = dict[str, Any]
# libyaml's safe loader when PyYAML has it (the pure-Python one dominated a pass's CPU)
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def environment() -> jinja2.Environment:
    """The one template environment (templates compile once per process: a pass renders a
    dozen of them per consortium)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        auto_reload=False,  # templates ship with the code: no mtime check per render
    )
    # no globals: a value the caller forgot must be an error, not jinja's `namespace`/`range`
    env.globals.clear()
    env.filters["tojson"] = _tojson
    return env


class _Memo:
    """Rendered output by a digest of what it was rendered from, least recently used out
    first. The templates are pure functions of their values (no globals, StrictUndefined),
    so equal inputs give equal output: a pass that renders what an earlier pass rendered
    (all but the StatefulSet after a new image, all of it while waiting) parses no YAML.
    Only workload templates go through it — never a Secret's (no key material is kept
    here) — and only outputs up to MAX_TEXT characters (a genesis ConfigMap may be large).
    The YAML load and dump were ~30 % of the operator's busy CPU during a spec change on
    100 consortia (py-spy, bench operator)."""

    MAX_TEXT = 32_768

    def __init__(self, entries: int = 1024) -> None:
        self.entries = entries
        self._texts: collections.OrderedDict[bytes, str] = collections.OrderedDict()

    @staticmethod
    def key(*parts: Any) -> bytes | None:
        """The digest of `parts` as canonical JSON; None when they are not JSON (no memo)."""
        try:
            text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):
            return None
        return hashlib.sha256(text.encode()).digest()

    def get(self, key: bytes | None) -> str | None:
        if key is None or (text := self._texts.get(key)) is None:
            return None
        self._texts.move_to_end(key)
        return text

    def put(self, key: bytes | None, text: str) -> None:
        if key is None or len(text) > self.MAX_TEXT:
            return
        self._texts[key] = text
        self._texts.move_to_end(key)
        while len(self._texts) > self.entries:
            self._texts.popitem(last=False)


# templates whose rendered manifests are memoised (_Memo); secret.yaml.j2 never is
_MEMOISED = frozenset(
    {
        "configmap.yaml.j2",
        "services.yaml.j2",
        "pdb.yaml.j2",
        "networkpolicy.yaml.j2",
        "external-service.yaml.j2",
        "statefulset.json.j2",
        "backup-cronjob.yaml.j2",
    }
)
_MEMO = _Memo()


def _tojson(value: Any) -> str:
    """JSON (a valid YAML flow scalar/collection); a missing value raises UndefinedError."""
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    return json.dumps(value)


class Renderer:
    """Renders the manifests of one consortium."""

    def __init__(
        self,
        settings: Settings,
        names: Names,
        owner: Owner,
        operator_namespace: str | None = None,
    ) -> None:
        """`operator_namespace`: admitted to the node client port by the NetworkPolicy when
        spec.security.clientCidrs restricts it (the operator reads status over gRPC)."""
        self.operator_namespace = operator_namespace
        self.settings = settings
        self.names = names
        self.owner = owner
        self.env = environment()

    # ----------------------------------------------------------------------- helpers

    def _text(self, template: str, **values: Any) -> str:
        return self.env.get_template(template).render(**values)

    def _docs(self, template: str, **values: Any) -> list[Manifest]:
        key = _MEMO.key(template, values) if template in _MEMOISED else None
        if (hit := _MEMO.get(key)) is not None:
            return cast(list[Manifest], json.loads(hit))  # a fresh copy: callers may change it
        text = self._text(template, **values)
        if template.endswith(".json.j2"):  # one JSON document (statefulset.json.j2)
            docs = [json.loads(text)]
        else:
            docs = [d for d in yaml.load_all(text, Loader=_YAML_LOADER) if d]
        if key is not None:
            as_json = json.dumps(docs)
            if json.loads(as_json) == docs:  # only what JSON gives back unchanged
                _MEMO.put(key, as_json)
        return docs

    def _one(self, template: str, **values: Any) -> Manifest:
        (doc,) = self._docs(template, **values)
        return doc

    def owner_references(self) -> list[dict[str, Any]]:
        return [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": self.owner.name,
                "uid": self.owner.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]

    def _common(self) -> dict[str, Any]:
        return {"namespace": self.owner.namespace, "owner_references": self.owner_references()}

    def peer_address(self, pod: str) -> str:
        return (
            f"{pod}.{self.names.peers_service}.{self.owner.namespace}.svc."
            f"{self.settings.cluster_domain}:{PEER_PORT}"
        )

    # ----------------------------------------------------------------------- key material

    def keys_secret(self, org: str, key_files: Mapping[str, str]) -> Manifest:
        """The organisation's node keys: `<pod>.json` -> key file text."""
        return self._one(
            "secret.yaml.j2",
            name=self.names.keys_secret(org),
            labels=self.names.labels("node-keys", org),
            immutable=False,  # grows when the organisation scales up; entries never change
            data={f"{pod}.json": _b64(text) for pod, text in sorted(key_files.items())},
            **self._common(),
        )

    def ca_secret(self, org: str, ca: Issued) -> Manifest:
        """The organisation's CA: ca.pem (public, also in genesis) and ca.key (secret)."""
        return self._one(
            "secret.yaml.j2",
            name=self.names.ca_secret(org),
            labels=self.names.labels("ca", org),
            immutable=True,  # the CA is in genesis: it never changes
            data={"ca.pem": _b64b(ca.cert_pem), "ca.key": _b64b(ca.key_pem)},
            **self._common(),
        )

    def tls_secret(self, org: str, certs: Mapping[str, Issued]) -> Manifest:
        """Node TLS material of an organisation: `<pod>.pem` and `<pod>.key` per pod. Entries
        are replaced on rotation (kubelet refreshes the mounted files; nodes reload them)."""
        data: dict[str, str] = {}
        for pod, issued in sorted(certs.items()):
            data[f"{pod}.pem"] = _b64b(issued.cert_pem)
            data[f"{pod}.key"] = _b64b(issued.key_pem)
        return self._one(
            "secret.yaml.j2",
            name=self.names.tls_secret(org),
            labels=self.names.labels("node-tls", org),
            immutable=False,
            data=data,
            **self._common(),
        )

    def client_secret(self, name: str, org: str, bundle: bytes, issued: Issued) -> Manifest:
        """A client TLS directory as a Secret (ca.pem = every organisation's CA, client.pem,
        client.key): `consortium --tls-dir` reads these files. Replaced on rotation."""
        return self._one(
            "secret.yaml.j2",
            name=name,
            labels=self.names.labels("client-tls", org),
            immutable=False,
            data={
                "ca.pem": _b64b(bundle),
                "client.pem": _b64b(issued.cert_pem),
                "client.key": _b64b(issued.key_pem),
            },
            **self._common(),
        )

    def member_key_secret(self, org: str, key_file: str) -> Manifest:
        """The organisation's member key as an entry of its client Secret (merged in: the
        TLS entries are the certificate phase's)."""
        return self._one(
            "secret.yaml.j2",
            name=self.names.client_secret(org),
            labels=self.names.labels("client-tls", org),
            immutable=False,
            data={MEMBER_KEY_FILE: _b64(key_file)},
            **self._common(),
        )

    def node_dns_names(self, pod: str, spec: ConsortiumSpec | None = None) -> list[str]:
        """What a node pod's certificate must name: every form of its peer address and of the
        client Service a client in the cluster may dial (short, namespaced, fully qualified),
        and (federation) the external host name other clusters dial it at."""
        ns, domain = self.owner.namespace, self.settings.cluster_domain
        out = []
        for host in (f"{pod}.{self.names.peers_service}", self.names.client_service):
            out += [host, f"{host}.{ns}", f"{host}.{ns}.svc", f"{host}.{ns}.svc.{domain}"]
        external = self.external_host(spec, pod) if spec is not None else None
        if external is not None and not _is_ip(external):
            out.append(external)
        return [*out, "localhost"]

    def node_ips(self, spec: ConsortiumSpec, pod: str) -> list[str]:
        """IP addresses a node pod's certificate names besides 127.0.0.1: the external IP
        other clusters dial it at, when its organisation is exposed by address."""
        host = self.external_host(spec, pod)
        return [host] if host is not None and _is_ip(host) else []

    def external_host(self, spec: ConsortiumSpec, pod: str) -> str | None:
        """The host other clusters dial `pod` at (its organisation's expose.address)."""
        parsed = self.names.parse_pod(pod, tuple(o.name for o in spec.local))
        org = spec.org(parsed[0]) if parsed is not None else None
        return org.expose.address if org is not None and org.expose is not None else None

    def external_address(self, spec: ConsortiumSpec, pod: str) -> str | None:
        """host:port other clusters dial `pod` at (published in the contribution), if its
        organisation is exposed."""
        parsed = self.names.parse_pod(pod, tuple(o.name for o in spec.local))
        org = spec.org(parsed[0]) if parsed is not None else None
        if org is None or org.expose is None or parsed is None:
            return None
        return org.expose.endpoint(parsed[1])

    def server_name(self, pod: str) -> str:
        """The name the operator checks a node's certificate against when it dials the pod's
        IP (one of `node_dns_names`)."""
        return f"{pod}.{self.names.peers_service}.{self.owner.namespace}.svc"

    def admin_secret(self, key_file: str) -> Manifest:
        return self._one(
            "secret.yaml.j2",
            name=self.names.admin_secret,
            labels=self.names.labels("admin-key"),
            immutable=True,
            data={ADMIN_KEY_FILE: _b64(key_file)},
            **self._common(),
        )

    def org_admin_secret(self, org: str, key_file: str) -> Manifest:
        """Organisation `org`'s own governance admin key: one key, one organisation."""
        return self._one(
            "secret.yaml.j2",
            name=self.names.org_admin_secret(org),
            labels=self.names.labels("admin-key", org),
            immutable=True,
            data={ADMIN_KEY_FILE: _b64(key_file)},
            **self._common(),
        )

    def genesis_configmap(self, genesis_json: str, genesis_hash: str) -> Manifest:
        return self._one(
            "configmap.yaml.j2",
            name=self.names.genesis_configmap,
            labels=self.names.labels("genesis"),
            annotations={GENESIS_HASH: genesis_hash},
            immutable=True,  # a chain's genesis never changes
            data={"genesis.json": genesis_json},
            **self._common(),
        )

    # ----------------------------------------------------------------------- workloads

    def node_config(
        self,
        spec: ConsortiumSpec,
        org: str,
        targets: Mapping[str, OrgTarget],
        node_keys: Mapping[str, bytes],
        joining: bool = False,
    ) -> str:
        """The consortium-node config YAML of organisation `org`: the provisioning core's
        NodeConfig document (`NodeConfig.to_dict()`), every pod of the organisation reads it
        and gets its name, key and certificate from --name/--key-file/--tls-*-file. Peers:
        every pod of every local organisation the targets run (that has a key), in a stable
        order, dialled inside the cluster; then every validator of each remote organisation
        (federation), dialled at the external address its own cluster publishes. `joining`
        (federation.joining): the nodes also trust their own organisation's CA (tls.ca_file),
        so this operator and the organisation's users reach them before the chain admits it."""
        peers = [
            Peer(node_keys[pod], self.peer_address(pod))
            for o in spec.local
            for pod in (self.names.pod(o.name, i) for i in range(targets[o.name].replicas))
            if pod in node_keys
        ]
        peers += [
            Peer(bytes.fromhex(v.node_id), v.address)
            for o in spec.remote
            if o.remote is not None
            for v in o.remote.validators
        ]
        first = self.names.pod(org, 0)  # every pod overrides these paths with its own
        layout = Layout(
            data_dir=DATA_DIR,
            key_file=f"/keys/{first}.json",
            genesis_file=GENESIS_PATH,
            listen=f"0.0.0.0:{CLIENT_PORT}",
            peer_listen=f"0.0.0.0:{PEER_PORT}",
            metrics_listen=f"0.0.0.0:{METRICS_PORT}",
            health_listen=f"0.0.0.0:{HEALTH_PORT}",
            public_listen=f"0.0.0.0:{PUBLIC_PORT}",
            tls_cert_file=f"{TLS_DIR}/{first}.pem",
            tls_key_file=f"{TLS_DIR}/{first}.key",
            tls_ca_file=f"{OWN_CA_DIR}/ca.pem" if joining and spec.security.tls else None,
        )
        cfg = nodeconfig.node_config(spec, (org, org), layout, peers)
        header = (
            f"# consortium-node config for organisation {org} (rendered by the operator; every "
            "pod of the\n# organisation reads it, and gets its name and key file from "
            "--name/--key-file).\n"
        )
        return header + _yaml_text(nodeconfig.document(cfg))

    def workloads(
        self,
        spec: ConsortiumSpec,
        targets: Mapping[str, OrgTarget],
        node_keys: Mapping[str, bytes],
        genesis_hash: str,
        joining: frozenset[str] = frozenset(),
    ) -> list[Manifest]:
        """Node config ConfigMap, peer and client Services, the PodDisruptionBudget, and one
        StatefulSet per organisation — in apply order. `joining`: federation.joining."""
        out: list[Manifest] = []
        out.append(
            self._one(
                "configmap.yaml.j2",
                name=self.names.config_configmap,
                labels=self.names.labels("node-config"),
                annotations={GENESIS_HASH: genesis_hash},
                immutable=False,
                data={
                    f"{o.name}.yaml": self.node_config(
                        spec, o.name, targets, node_keys, o.name in joining
                    )
                    for o in spec.local
                },
                **self._common(),
            )
        )
        out.extend(
            self._docs(
                "services.yaml.j2",
                peers_service=self.names.peers_service,
                client_service=self.names.client_service,
                peer_labels=self.names.labels("peers"),
                client_labels=self.names.labels("client"),
                selector=self.names.selector(),
                client_port=CLIENT_PORT,
                peer_port=PEER_PORT,
                metrics_port=METRICS_PORT,
                public_port=public_port(spec),
                **self._common(),
            )
        )
        total = sum(t.replicas for t in targets.values())
        out.append(
            self._one(
                "pdb.yaml.j2",
                name=self.names.pdb,
                labels=self.names.labels("quorum"),
                selector=self.names.selector(),
                max_unavailable=max(0, total - spec.consensus.quorum(total)),
                **self._common(),
            )
        )
        out.append(self.network_policy(spec, self.operator_namespace))
        out.extend(self.external_services(spec, targets))
        for org in spec.local:
            out.append(
                self.statefulset(
                    spec, org.name, targets[org.name], genesis_hash, org.name in joining
                )
            )
        return out

    def external_services(
        self, spec: ConsortiumSpec, targets: Mapping[str, OrgTarget]
    ) -> list[Manifest]:
        """Federation: one Service per pod of each exposed local organisation (its peer
        port: NodePort expose.port+i, or a LoadBalancer on expose.port+i). A pod scaled away
        keeps its Service until the Consortium is deleted (owner reference): harmless, it
        selects no pod, and its port stays reserved for that ordinal."""
        out: list[Manifest] = []
        for o in spec.local:
            if o.expose is None:
                continue
            for i in range(targets[o.name].replicas):
                pod = self.names.pod(o.name, i)
                out.append(
                    self._one(
                        "external-service.yaml.j2",
                        name=self.names.external_service(pod),
                        labels=self.names.labels("external", o.name),
                        selector={
                            **self.names.org_selector(o.name),
                            "statefulset.kubernetes.io/pod-name": pod,
                        },
                        type=o.expose.type,
                        port=o.expose.port + i,
                        peer_port=PEER_PORT,
                        **self._common(),
                    )
                )
        return out

    def network_policy(self, spec: ConsortiumSpec, operator_namespace: str | None) -> Manifest:
        """The consortium's NetworkPolicy (see networkpolicy.yaml.j2). The operator's namespace
        (it calls the client port for status and governance) is always admitted to the client port;
        an empty spec.security.clientCidrs admits any source there."""
        sec = spec.security
        client_from: list[dict[str, Any]]
        if sec.client_cidrs:
            client_from = [{"ipBlock": {"cidr": c}} for c in sec.client_cidrs]
            client_from.append({"podSelector": {"matchLabels": self.names.selector()}})
            # the scheduled backup's pods (ExportBackup)
            client_from.append({"podSelector": {"matchLabels": self.names.backup_selector()}})
            if operator_namespace:
                client_from.append(
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": operator_namespace}
                        }
                    }
                )
        else:  # an empty `from` admits every source (ipBlock 0.0.0.0/0 may miss pod traffic)
            client_from = []
        return self._one(
            "networkpolicy.yaml.j2",
            name=self.names.network_policy,
            labels=self.names.labels("network-policy"),
            selector=self.names.selector(),
            peer_port=PEER_PORT,
            client_port=CLIENT_PORT,
            extra_client_ports=[port] if (port := public_port(spec)) else [],
            metrics_port=METRICS_PORT,
            health_port=HEALTH_PORT,
            client_from=client_from,
            peers_from_anywhere=any(o.expose is not None for o in spec.local),
            **self._common(),
        )

    def statefulset(
        self,
        spec: ConsortiumSpec,
        org: str,
        target: OrgTarget,
        genesis_hash: str,
        joining: bool = False,
    ) -> Manifest:
        o = spec.org(org)
        if o is None:
            raise KeyError(f"organization {org!r} is not in the spec")
        fingerprint = spec.pod_fingerprint(o, self.settings.node_image)
        labels = self.names.labels("validator", org)
        resources = to_json(o.resources) if o.resources is not None else {}
        return self._one(
            "statefulset.json.j2",
            name=self.names.statefulset(org),
            labels=labels,
            annotations={FINGERPRINT: fingerprint, GENESIS_HASH: genesis_hash},
            peers_service=self.names.peers_service,
            replicas=target.replicas,
            partition=target.partition,
            selector=self.names.org_selector(org),
            consortium_selector=self.names.selector(),
            pod_labels=labels,
            pod_annotations={
                FINGERPRINT: fingerprint,
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(METRICS_PORT),
            },
            uid=NODE_UID,
            node_selector=dict(o.node_selector or {}),
            tolerations=to_json(o.tolerations),
            image=spec.image_or(self.settings.node_image),
            image_pull_policy=spec.image_pull_policy,
            config_path=CONFIG_PATH,
            client_port=CLIENT_PORT,
            peer_port=PEER_PORT,
            metrics_port=METRICS_PORT,
            health_port=HEALTH_PORT,
            public_port=public_port(spec),
            tls_dir=TLS_DIR if spec.security.tls else None,
            tls_secret=self.names.tls_secret(org),
            own_ca_dir=OWN_CA_DIR if joining and spec.security.tls else None,
            ca_secret=self.names.ca_secret(org),
            resources=resources,
            data_dir=DATA_DIR,
            genesis_configmap=self.names.genesis_configmap,
            config_configmap=self.names.config_configmap,
            config_key=f"{org}.yaml",
            keys_secret=self.names.keys_secret(org),
            pvc_labels=self.names.labels("ledger", org),
            storage_size=o.storage.size,
            storage_class=o.storage.class_name or "",
            restore=self._restore(spec, o),
            **self._common(),
        )

    def _restore(self, spec: ConsortiumSpec, org: OrganizationSpec) -> dict[str, Any] | None:
        """The restore init step of `org`'s pods (spec restoreFrom), None without one."""
        r = spec.restore_source(org)
        if r is None:
            return None
        command = [
            "consortium", "backup", "restore", f"{RESTORE_DIR}/{r.backup}",
            "--config", CONFIG_PATH, "--once", "--report", "/dev/termination-log",
        ]  # fmt: skip
        return {"claim_name": r.claim_name, "command": command}

    def backup_cronjob(self, spec: ConsortiumSpec, sources: Sequence[str]) -> Manifest:
        """The scheduled backup (spec.backup): exports from `sources` in order (pods; none:
        the CronJob is suspended, see backupplan.sources)."""
        b = spec.backup
        assert b is not None, "only with spec.backup"
        ns = self.owner.namespace
        addresses = ",".join(
            f"{p}.{self.names.peers_service}.{ns}.svc:{CLIENT_PORT}" for p in sources
        )
        command = [
            "consortium", "backup", "create", f"{BACKUP_DIR}/{self.names.consortium}",
            "--from-node", addresses or "none", "--keep", str(b.retention),
            "--report", "/dev/termination-log",
        ]  # fmt: skip
        return self._one(
            "backup-cronjob.yaml.j2",
            name=self.names.backup_cronjob,
            labels=self.names.labels("backup"),
            pod_labels=self.names.backup_labels(),
            schedule=b.schedule,
            suspend=b.suspend or not sources,
            deadline_seconds=BACKUP_DEADLINE_SECONDS,
            uid=NODE_UID,
            image=spec.image_or(self.settings.node_image),
            image_pull_policy=spec.image_pull_policy,
            command=command,
            tls_secret=self.names.operator_client_secret if spec.security.tls else "",
            claim_name=b.claim_name,
            **self._common(),
        )


def _yaml_text(doc: Mapping[str, Any]) -> str:
    """`doc` as block YAML in its own key order, memoised by its JSON (_Memo; a node config
    holds peers' public keys and addresses, no secret)."""
    try:
        # key order matters here (no sort_keys); the prefix keeps it apart from _docs' keys
        key = hashlib.sha256(b"yaml\0" + json.dumps(doc).encode()).digest()
    except (TypeError, ValueError):
        key = None
    if (hit := _MEMO.get(key)) is not None:
        return hit
    text = yaml.safe_dump(doc, sort_keys=False)
    _MEMO.put(key, text)
    return text


def public_port(spec: ConsortiumSpec) -> int | None:
    """The read-only port without client certificates, when the nodes serve it
    (provision.nodeconfig decides whether they do)."""
    return PUBLIC_PORT if nodeconfig.serves_public_reads(spec) else None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _b64b(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
