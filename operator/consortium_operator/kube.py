"""The only module that talks to the Kubernetes API (kopf's own watching and event posting
aside). Uses the synchronous `kubernetes` client's transport (auth, TLS, kubeconfig or
in-cluster config) with raw JSON paths, run in threads via `asyncio.to_thread`.

- `observe`: the consortium's objects -> `model.Observed` (public keys only), one LIST per
  kind (every Secret, TLS material included, in one); with the operator's client TLS entries.
  Each LIST asks for a resourceVersion NotOlderThan the newest object of its kind this process
  wrote or read, so the apiserver answers it from its watch cache and it still shows our
  own writes (`list_objects`).
- `apply`: server-side apply (field manager `consortium-operator`, force) — idempotent; a
  manifest this process applied unchanged less than `reapply_seconds` ago is not sent again
  (the resync period) unless a watch event showed it deleted or changed by another writer
  (`notice`), or `observe` found it so (`check_applied`, StatefulSets and ConfigMaps, which
  every pass reads for planning), or this module deleted it or read it as absent.
- `create`: create-if-absent for things that must never be replaced (genesis, admin key).
- `add_secret_entries`: add missing keys to a Secret, never overwriting an existing entry
  (optimistic concurrency on resourceVersion: a concurrent writer makes us retry, not clobber).
- `patch_status`, `delete_consortium`.

Key material read from Secrets stays inside this module except when the caller explicitly
asks for the admin key to sign a governance transaction (`read_admin_key`) and the operator's
client TLS key for its gRPC calls (`Observation.operator_client`, `secret_data`). Calls run in
this module's own thread pool (`WORKERS`)."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextvars
import datetime as dt
import functools
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

from consortium_node.ledger.errors import DecodeError
from consortium_node.ledger.genesis import Genesis
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from . import pki
from .backupplan import BackupRun, RestoreRefusal, parse_report, run_of
from .model import (
    GROUP,
    HEX32_RE,
    MEMBER_ANNOTATION,
    PLURAL,
    VERSION,
    ContractSpec,
    Names,
    Observed,
    PodState,
    StatefulSetState,
)
from .pki import Issued
from .render import ADMIN_KEY_FILE, FINGERPRINT, LEDGER_CLAIM, MEMBER_KEY_FILE, Manifest

log = logging.getLogger("consortium_operator.kube")
FIELD_MANAGER = "consortium-operator"
INSTANCE_LABEL = "app.kubernetes.io/instance"

# kind -> (API path prefix, plural); namespaced objects only
_PATHS: dict[str, tuple[str, str]] = {
    "ConfigMap": ("/api/v1", "configmaps"),
    "Secret": ("/api/v1", "secrets"),
    "Service": ("/api/v1", "services"),
    "Pod": ("/api/v1", "pods"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "CronJob": ("/apis/batch/v1", "cronjobs"),
    "Consortium": (f"/apis/{GROUP}/{VERSION}", PLURAL),
}


class KubeError(Exception):
    """An API call failed; `status` is the HTTP status (0 = no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Conflict:
    """Marker result: the object changed under us (HTTP 409); observe again."""


# requests in flight at once (threads, and HTTP connections kept to the apiserver): asyncio's
# default executor has cpu_count + 4 threads (6 on 2 cores) — too few for 100 consortia whose
# passes each issue 8 reads at once; a spec change queued behind them
WORKERS = 32


def _send(
    api: k8s.ApiClient,
    method: str,
    path: str,
    headers: Mapping[str, str],
    *,
    query: Mapping[str, str] | None = None,
    **kw: Any,
) -> Any:
    """One HTTP request through the client's transport (auth, TLS, kubeconfig): its response
    (a RESTResponse; status not checked, body not read), or KubeError when none came. `kw`:
    the request's `body` and `timeout`, if any."""
    _m, url, hdrs, _b, _p = api.param_serialize(
        method=method,
        resource_path=path,
        header_params=dict(headers),
        auth_settings=["BearerToken"],
    )
    if query:
        url += "?" + urlencode(query)
    try:
        return api.call_api(
            method, url, header_params=hdrs, body=kw.get("body"), _request_timeout=kw.get("timeout")
        )
    except k8s.ApiException as e:
        raise KubeError(int(e.status or 0), str(e.reason or e)) from None
    except Exception as e:  # urllib3 connection errors
        raise KubeError(0, f"{method} {path}: {e}") from None


def _failure(method: str, path: str, status: int, raw: bytes) -> KubeError:
    """The error of an answer with a non-2xx `status`: the apiserver's message if it sent
    one (a Status object), else the start of the body."""
    try:
        message = json.loads(raw).get("message", "")
    except ValueError:
        message = raw[:300].decode(errors="replace")
    return KubeError(status, f"{method} {path}: {message}")


def make_api_client(connections: int = WORKERS) -> k8s.ApiClient:
    """In-cluster config when running in a pod, else the current kubeconfig ($KUBECONFIG);
    up to `connections` pooled HTTP connections (the client's default is cpu_count * 5)."""
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
    cfg = k8s.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = connections
    return k8s.ApiClient(cfg)


def _resource(path: str) -> str:
    """The API resource a namespaced path is of ("/api/v1 secrets"): resourceVersions are
    comparable only within one resource's storage."""
    head, _, rest = path.partition("/namespaces/")
    parts = rest.split("/")
    return f"{head} {parts[1]}" if len(parts) > 1 else path


def _rv(obj: Any) -> int:
    rv = ((obj.get("metadata") if isinstance(obj, dict) else None) or {}).get("resourceVersion")
    return int(rv) if isinstance(rv, str) and rv.isdigit() else 0


def _path(kind: str, namespace: str, name: str | None = None, sub: str | None = None) -> str:
    prefix, plural = _PATHS[kind]
    p = f"{prefix}/namespaces/{quote(namespace)}/{plural}"
    if name is not None:
        p += f"/{quote(name)}"
    if sub is not None:
        p += f"/{sub}"
    return p


class Kube:
    """Kubernetes API access for the operator. Every public method is async (a thread per
    call); errors are `KubeError`."""

    def __init__(
        self,
        api: k8s.ApiClient,
        timeout: float = 15.0,
        reapply_seconds: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
        workers: int = WORKERS,
    ) -> None:
        self.api = api
        self.timeout = timeout
        self.reapply_seconds = reapply_seconds
        self._monotonic = monotonic
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.workers = workers
        # object path -> what this process applied there (see `apply`, `check_applied`)
        self._applied: dict[str, Applied] = {}
        # object path -> the versions watch events showed while our apply of it was in
        # flight (None: deleted), in arrival order (see `notice`)
        self._in_flight: dict[str, list[str | None]] = {}
        # API resource -> the newest resourceVersion of an object of it this process wrote
        # or read (see `list_objects`); updated from the pool's threads
        self._seen_rv: dict[str, int] = {}
        self._seen_lock = threading.Lock()

    # ----------------------------------------------------------------------- transport

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        """One HTTP request; the decoded JSON answer, or None for 404 on GET/DELETE."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        # the REST layer JSON-encodes dict bodies for JSON and apply-patch+yaml types
        resp = _send(self.api, method, path, headers, query=query, body=body, timeout=self.timeout)
        try:
            raw = resp.read()
        except Exception as e:  # urllib3 connection errors
            raise KubeError(0, f"{method} {path}: {e}") from None
        status = int(resp.status)
        if status == 404 and method in ("GET", "DELETE"):
            return None
        if not 200 <= status < 300:
            raise _failure(method, path, status, raw)
        return json.loads(raw) if raw else {}

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        """`_request` in this Kube's own threads (`workers` of them, not asyncio's default
        executor, which kopf and the gRPC calls share)."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(self.workers, "kube")
        ctx = contextvars.copy_context()
        call = functools.partial(ctx.run, self._request, method, path, **kw)
        out = await asyncio.get_running_loop().run_in_executor(self._pool, call)
        self._saw(path, out)
        return out

    def _saw(self, path: str, out: Any) -> None:
        """Remember the newest object resourceVersion of `path`'s resource in an answer (an
        object, or a list's items; never a list's own version, which may be etcd's global
        revision that the apiserver's cache of this resource reaches only on its next event
        or progress notification)."""
        if not isinstance(out, dict):
            return
        items = out.get("items")
        rv = max(map(_rv, items), default=0) if isinstance(items, list) else _rv(out)
        if rv:
            res = _resource(path)
            with self._seen_lock:
                if rv > self._seen_rv.get(res, 0):
                    self._seen_rv[res] = rv

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        path = _path(kind, namespace, name)
        out = await self._call("GET", path)
        if not isinstance(out, dict):
            self._applied.pop(path, None)  # gone: the next apply sends it again
            return None
        return out

    async def list_objects(
        self, kind: str, namespace: str, selector: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        """The objects of `kind` with the `selector` labels, as new as every object of that
        kind this process has written or read (read-your-writes, monotonic reads): the LIST
        asks for resourceVersion NotOlderThan the newest of them, which the apiserver
        answers from its watch cache. A LIST without a version is read from etcd unless the
        cluster serves consistent LISTs from its cache: 35-40 ms against 4-6 ms per LIST of
        one consortium's Secrets among 1,200 on this machine's etcd 3.4, where 100 waiting
        consortia kept kube-apiserver busy listing (bench operator). Without a version
        (the first LIST of a kind) or when the cache does not reach it in time (504), the
        LIST is the consistent one."""
        sel = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        path = _path(kind, namespace)
        floor = self._seen_rv.get(_resource(path), 0)
        query = {"labelSelector": sel}
        if floor:
            query |= {"resourceVersion": str(floor), "resourceVersionMatch": "NotOlderThan"}
        try:
            out = await self._call("GET", path, query=query)
        except KubeError as e:
            if not floor or e.status not in (410, 504):
                raise
            out = await self._call("GET", path, query={"labelSelector": sel})
        return list(out.get("items", [])) if out else []

    async def get_named(
        self,
        kind: str,
        namespace: str,
        selector: Mapping[str, str],
        names: Iterable[str],
        listed_only: Iterable[str] = (),
    ) -> dict[str, dict[str, Any] | None]:
        """The objects `names` of `kind`, as `get` answers each (None: absent), in one LIST
        by `selector` (the consortium's labels; every object we create carries them); a name
        the LIST lacks (an unlabelled object, e.g. a Secret restored by hand) is read by name,
        except those of `listed_only` (taken from the LIST or None: a Secret the caller needs
        by name only in some cases reads it then, not on every pass while it does not exist).
        A pass over a 2-organisation consortium reads its 12 Secrets in 1 request, not 12."""
        wanted = list(dict.fromkeys([*names, *listed_only]))
        skip = set(listed_only)
        listed: dict[str, dict[str, Any] | None] = {
            str(o["metadata"]["name"]): o
            for o in await self.list_objects(kind, namespace, selector)
            if o.get("metadata", {}).get("name") in wanted
        }
        # `get` forgets what is absent
        missing = [n for n in wanted if n not in listed and n not in skip]
        for n, got in zip(
            missing,
            await asyncio.gather(*(self.get(kind, namespace, n) for n in missing)),
            strict=True,
        ):
            listed[n] = got
        return {n: listed.get(n) for n in wanted}

    # ----------------------------------------------------------------------- writes

    async def apply(self, manifests: Iterable[Manifest]) -> None:
        """Server-side apply, in order. Idempotent: unchanged objects are no-ops on the server;
        one this process applied with the same content within `reapply_seconds` is skipped
        (a no-op apply still costs the apiserver a full merge: 100 consortia re-applied 600
        objects on every pass of their 5 s retry)."""
        for m in manifests:
            meta = m["metadata"]
            path = _path(m["kind"], meta["namespace"], meta["name"])
            digest = hashlib.sha256(
                json.dumps(m, sort_keys=True, separators=(",", ":")).encode()
            ).hexdigest()
            now = self._monotonic()
            seen = self._applied.get(path)
            if seen is not None and seen.digest == digest and now - seen.at < self.reapply_seconds:
                continue
            self._applied.pop(path, None)  # a failed apply leaves nothing to trust
            self._in_flight[path] = []
            try:
                out = await self._call(
                    "PATCH",
                    path,
                    query={"fieldManager": FIELD_MANAGER, "force": "true"},
                    body=m,
                    content_type="application/apply-patch+yaml",
                )
            finally:
                held = self._in_flight.pop(path)
            rv = str(((out or {}).get("metadata") or {}).get("resourceVersion", ""))
            # watch events arrive in resourceVersion order: those held before our own are
            # older than this apply (it supersedes them); one after it is another writer's
            if rv in held and held[held.index(rv) + 1 :]:
                continue  # not as applied any more: the next apply sends it again
            instance = str((meta.get("labels") or {}).get(INSTANCE_LABEL, ""))
            self._applied[path] = Applied(digest, now, rv, m["kind"], meta["namespace"], instance)

    def check_applied(
        self, kind: str, namespace: str, instance: str, live: Iterable[Mapping[str, Any]]
    ) -> None:
        """Forget what this process applied of `kind` for consortium `instance` that is no
        longer there as applied: `live` (a LIST by the consortium's labels) lacks it, or holds
        another resourceVersion (someone else changed it). Its next `apply` sends it again,
        so drift and deletions are repaired on the next pass, not after the resync period."""
        now = {
            _path(kind, namespace, str(o["metadata"]["name"])): str(
                o["metadata"].get("resourceVersion", "")
            )
            for o in live
        }
        for path, a in list(self._applied.items()):
            if a.kind == kind and a.of(namespace, instance) and now.get(path) != a.rv:
                del self._applied[path]

    def notice(self, kind: str, namespace: str, name: str, rv: str | None) -> bool:
        """A watch event of an object (reconcile.wake): `rv` its resourceVersion now, None if
        it was deleted. If this process applied it and it is no longer as applied, the next
        `apply` sends it again — drift repaired at the next pass (for Services, PDBs,
        NetworkPolicies and CronJobs, which no pass reads, the only way before the resync
        period; MetadataWatch's re-LIST reports a deletion during a watch gap). The event of
        our own apply
        carries the version its PATCH answered, and changes nothing: False for it (the pass
        that applied it knew what it wrote), True for every other event (news). An event
        that arrives while this process's apply of the object is in flight (the watch may
        deliver it before the PATCH's answer) is held for that apply to judge: False here,
        and a later writer's version after ours makes the next apply send it again (the
        next pass: the next event or the watched wait). Without holding them, 100
        consortia's spec change made 41 more passes (bench operator)."""
        if kind not in _PATHS:
            return True
        path = _path(kind, namespace, name)
        held = self._in_flight.get(path)
        if held is not None:  # our apply of it is on the wire: `apply` judges it
            held.append(rv)
            return False
        a = self._applied.get(path)
        if a is not None and rv is not None and rv == a.rv:
            return False
        if a is not None:
            del self._applied[path]
        return True

    async def create(self, manifest: Manifest) -> bool:
        """Create; False if an object of that name already exists (which is left untouched)."""
        meta = manifest["metadata"]
        try:
            await self._call("POST", _path(manifest["kind"], meta["namespace"]), body=manifest)
        except KubeError as e:
            if e.status == 409:
                return False
            raise
        return True

    async def add_secret_entries(self, manifest: Manifest) -> bool | Conflict:
        """Add the entries of `manifest` (a Secret) that the stored Secret lacks; existing
        entries are never changed. Creates the Secret if absent. True if anything was added."""
        return await self._merge_secret_entries(manifest, replace=False)

    async def put_secret_entries(self, manifest: Manifest) -> bool | Conflict:
        """Set the entries of `manifest` (a Secret), replacing those that exist (certificate
        rotation); creates the Secret if absent. Optimistic: a concurrent writer -> Conflict."""
        return await self._merge_secret_entries(manifest, replace=True)

    async def _merge_secret_entries(self, manifest: Manifest, replace: bool) -> bool | Conflict:
        """Merge-patch `manifest`'s entries into the stored Secret at the resourceVersion just
        read (a concurrent writer -> Conflict); all of them if `replace`, else only those it
        lacks (False: nothing to add). Creates the Secret if absent."""
        meta = manifest["metadata"]
        current = await self.get("Secret", meta["namespace"], meta["name"])
        if current is None:
            return await self.create(manifest) or Conflict()
        have = current.get("data") or {}
        entries = {k: v for k, v in manifest["data"].items() if replace or k not in have}
        if not entries:
            return False
        patch: dict[str, Any] = {
            "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
            "data": entries,
        }
        try:
            await self._call(
                "PATCH",
                _path("Secret", meta["namespace"], meta["name"]),
                body=patch,
                content_type="application/merge-patch+json",
            )
        except KubeError as e:
            if e.status == 409:
                return Conflict()
            raise
        return True

    async def secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """A Secret's entries, decoded (None if it does not exist). Never log the values."""
        return _decoded(await self.get("Secret", namespace, name))

    async def contract_modules(
        self, namespace: str, contracts: Iterable[ContractSpec]
    ) -> dict[str, bytes | str]:
        """Each spec contract's module from its ConfigMap — the entry `key` of binaryData, or
        of data holding the module in base64 — or a sentence saying why it cannot be read."""
        maps: dict[str, dict[str, Any] | None] = {}
        out: dict[str, bytes | str] = {}
        for c in contracts:
            if c.config_map not in maps:
                maps[c.config_map] = await self.get("ConfigMap", namespace, c.config_map)
            cm = maps[c.config_map]
            if cm is None:
                out[c.name] = f"ConfigMap {c.config_map} does not exist"
                continue
            binary, text = cm.get("binaryData") or {}, cm.get("data") or {}
            raw = binary.get(c.key, text.get(c.key))
            if raw is None:
                out[c.name] = f"ConfigMap {c.config_map} has no key {c.key}"
                continue
            try:
                out[c.name] = base64.b64decode(raw, validate=True)
            except (ValueError, TypeError):
                out[c.name] = f"ConfigMap {c.config_map} entry {c.key} is not base64"
        return out

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        await self._call(
            "PATCH",
            _path("Consortium", namespace, name, "status"),
            body={"status": status},
            content_type="application/merge-patch+json",
        )

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete (background propagation); False if it was already gone."""
        path = _path(kind, namespace, name)
        self._applied.pop(path, None)
        out = await self._call("DELETE", path, body={"propagationPolicy": "Background"})
        return out is not None

    # ----------------------------------------------------------------------- reads

    async def read_admin_key(self, namespace: str, names: Names) -> str:
        """The admin key file text, for signing a governance transaction. Never log it."""
        s = await self.get("Secret", namespace, names.admin_secret)
        data = (s or {}).get("data") or {}
        if ADMIN_KEY_FILE not in data:
            raise KubeError(404, f"Secret {names.admin_secret} has no {ADMIN_KEY_FILE}")
        return base64.b64decode(data[ADMIN_KEY_FILE]).decode()

    async def read_org_admin_key(self, namespace: str, names: Names, org: str) -> str:
        """Organisation `org`'s own admin key file text (its Secret only), for signing that
        organisation's proposal or vote. Never log it."""
        secret = names.org_admin_secret(org)
        s = await self.get("Secret", namespace, secret)
        data = (s or {}).get("data") or {}
        if ADMIN_KEY_FILE not in data:
            raise KubeError(404, f"Secret {secret} has no {ADMIN_KEY_FILE}")
        return base64.b64decode(data[ADMIN_KEY_FILE]).decode()

    async def annotate_secret(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        """Merge-patch a Secret's annotations (None removes one); its entries are untouched."""
        await self._call(
            "PATCH",
            _path("Secret", namespace, name),
            body={"metadata": {"annotations": dict(annotations)}},
            content_type="application/merge-patch+json",
        )

    async def patch_annotations(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        """Merge-patch the Consortium's annotations (None removes one)."""
        await self._call(
            "PATCH",
            _path("Consortium", namespace, name),
            body={"metadata": {"annotations": dict(annotations)}},
            content_type="application/merge-patch+json",
        )

    async def read_ca(self, namespace: str, names: Names, org: str) -> Issued:
        """An organisation's CA with its key, to issue certificates. Never log it."""
        data = await self.secret_data(namespace, names.ca_secret(org))
        if data is None or "ca.pem" not in data or "ca.key" not in data:
            raise KubeError(404, f"Secret {names.ca_secret(org)} lacks ca.pem/ca.key")
        return Issued(data["ca.pem"], data["ca.key"])

    async def observe(  # noqa: C901 -- one read per kind of object
        self, namespace: str, names: Names, orgs: tuple[str, ...], tls: bool = False
    ) -> Observation:
        """The consortium's Kubernetes objects (node statuses are added by nodes.py); with
        `tls` also its TLS material and the operator's client TLS Secret — every Secret in
        one LIST. The legacy consortium admin Secret is read by name (when the LIST lacks
        it) only for a legacy chain: an organisation-governed chain has none, and a GET of
        it on every pass would find nothing every time."""
        sel = names.selector()
        key_names = [names.keys_secret(o) for o in orgs]
        admin_names = [names.org_admin_secret(o) for o in orgs]
        client_names = [names.client_secret(o) for o in orgs]
        # the other kinds this process applies (Services, PDB, NetworkPolicy, CronJob) are
        # not read: the plan does not need them, and their drift is told by watch events
        # (`notice`) — listing them for it was 300 of 1,232 requests of a spec change on
        # 100 consortia (bench operator)
        cm_names = [names.genesis_configmap, names.config_configmap]
        tls_names = _tls_secret_names(names, orgs) if tls else []
        secrets, sts_by_name, cms, pods, pvcs = await asyncio.gather(
            self.get_named(
                "Secret",
                namespace,
                sel,
                [*key_names, *admin_names, *client_names, *tls_names],
                listed_only=[names.admin_secret],
            ),
            self.get_named("StatefulSet", namespace, sel, [names.statefulset(o) for o in orgs]),
            self.get_named("ConfigMap", namespace, sel, cm_names),
            self.list_objects("Pod", namespace, sel),
            self.list_objects("PersistentVolumeClaim", namespace, sel),
        )
        genesis_cm = cms[names.genesis_configmap]
        for kind, live in [
            ("StatefulSet", [o for o in sts_by_name.values() if o is not None]),
            ("ConfigMap", [o for o in cms.values() if o is not None]),
        ]:
            self.check_applied(kind, namespace, names.consortium, live)
        g = None
        if genesis_cm is not None:
            text = (genesis_cm.get("data") or {}).get("genesis.json", "")
            try:
                g = Genesis.from_json(text)
            except DecodeError as e:
                raise KubeError(0, f"ConfigMap {names.genesis_configmap}: {e}") from None
        admin_s = secrets[names.admin_secret]
        if admin_s is None and g is not None and not g.governed_by_organizations:
            admin_s = await self.get("Secret", namespace, names.admin_secret)
        key_secrets = [secrets[n] for n in key_names]
        statefulsets = [sts_by_name[names.statefulset(o)] for o in orgs]
        admin_secrets = [secrets[n] for n in admin_names]
        client_secrets = [secrets[n] for n in client_names]

        member_keys: dict[str, bytes] = {}
        registered: dict[str, bytes] = {}
        for org, secret in zip(orgs, client_secrets, strict=True):
            b64 = ((secret or {}).get("data") or {}).get(MEMBER_KEY_FILE)
            if b64 is None:
                continue
            member_keys[org] = pki.public_key_of(
                base64.b64decode(b64).decode(), f"Secret {names.client_secret(org)}"
            )
            mark = (secret["metadata"].get("annotations") or {}).get(MEMBER_ANNOTATION, "")
            if HEX32_RE.match(mark):
                registered[org] = bytes.fromhex(mark)

        org_admins: dict[str, bytes] = {}
        for org, secret in zip(orgs, admin_secrets, strict=True):
            b64 = ((secret or {}).get("data") or {}).get(ADMIN_KEY_FILE)
            if b64 is not None:
                org_admins[org] = pki.public_key_of(
                    base64.b64decode(b64).decode(), f"Secret {names.org_admin_secret(org)}"
                )

        admin_public = None
        if admin_s is not None and ADMIN_KEY_FILE in (admin_s.get("data") or {}):
            admin_public = pki.public_key_of(
                base64.b64decode(admin_s["data"][ADMIN_KEY_FILE]).decode(),
                f"Secret {names.admin_secret}",
            )

        node_keys: dict[str, bytes] = {}
        for secret in key_secrets:
            for entry, b64 in ((secret or {}).get("data") or {}).items():
                if entry.endswith(".json"):
                    text = base64.b64decode(b64).decode()
                    node_keys[entry[: -len(".json")]] = pki.public_key_of(
                        text, f"Secret {secret['metadata']['name']}/{entry}"
                    )

        genesis_validators = None
        genesis_hash = ""
        genesis_orgs: tuple[str, ...] = ()
        org_governance = False
        genesis_members: frozenset[bytes] = frozenset()
        if g is not None:
            genesis_validators = tuple((v.node_id, v.organization) for v in g.validators)
            genesis_orgs = tuple(o.name for o in g.organizations)
            genesis_hash = g.hash.hex()
            org_governance = g.governed_by_organizations
            genesis_members = frozenset(k for o in g.organizations for k in o.members)

        sts_states: dict[str, StatefulSetState] = {}
        for org, sts in zip(orgs, statefulsets, strict=True):
            if sts is None:
                continue
            spec, status = sts.get("spec", {}), sts.get("status", {})
            ru = (spec.get("updateStrategy") or {}).get("rollingUpdate") or {}
            sts_states[org] = StatefulSetState(
                org=org,
                replicas=int(spec.get("replicas", 0)),
                partition=int(ru.get("partition", 0)),
                fingerprint=(sts["metadata"].get("annotations") or {}).get(FINGERPRINT, ""),
                update_revision=str(status.get("updateRevision", "")),
                generation=int(sts["metadata"].get("generation", 1)),
                observed_generation=int(status.get("observedGeneration", 0)),
            )

        pod_states: dict[str, PodState] = {}
        for pod in pods:
            name = pod["metadata"]["name"]
            parsed = names.parse_pod(name, orgs)
            if parsed is None or pod["metadata"].get("deletionTimestamp"):
                continue
            status = pod.get("status") or {}
            conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
            cstat = status.get("containerStatuses") or []
            waiting = [((c.get("state") or {}).get("waiting") or {}).get("reason") for c in cstat]
            pod_states[name] = PodState(
                name=name,
                org=parsed[0],
                ordinal=parsed[1],
                ready=conds.get("Ready") == "True",
                revision=(pod["metadata"].get("labels") or {}).get("controller-revision-hash", ""),
                ip=status.get("podIP"),
                crash_looping="CrashLoopBackOff" in waiting,
                restarts=sum(int(c.get("restartCount", 0)) for c in cstat),
            )

        observed = Observed(
            admin_public=admin_public,
            node_keys=node_keys,
            genesis_validators=genesis_validators,
            genesis_hash=genesis_hash,
            genesis_organizations=genesis_orgs,
            org_admins=org_admins,
            org_governance=org_governance,
            member_keys=member_keys,
            registered_members=registered,
            genesis_members=genesis_members,
            volumes=frozenset(
                claim.removeprefix(LEDGER_CLAIM)
                for p in pvcs
                if (claim := str(p["metadata"]["name"])).startswith(LEDGER_CLAIM)
                and not p["metadata"].get("deletionTimestamp")
            ),
            # terminating claims too: their data is still there until they are gone
            volume_created={
                claim.removeprefix(LEDGER_CLAIM): str(p["metadata"].get("creationTimestamp", ""))
                for p in pvcs
                if (claim := str(p["metadata"]["name"])).startswith(LEDGER_CLAIM)
            },
            statefulsets=sts_states,
            pods=pod_states,
        )
        if not tls:
            return Observation(observed, None)
        t = _tls_observed(secrets, names, orgs)
        observed = replace(
            observed,
            ca_certs=t.ca_certs,
            ca_incomplete=t.ca_incomplete,
            tls_entries=t.tls_entries,
            client_dirs=t.client_dirs,
        )
        return Observation(observed, _decoded(secrets[names.operator_client_secret]))

    async def observe_backups(
        self, namespace: str, names: Names, orgs: tuple[str, ...]
    ) -> tuple[list[BackupRun], list[RestoreRefusal]]:
        """Finished backup pods (their termination messages) and node pods whose restore init
        step refused its backup (the refusal's termination message)."""
        backup_pods, node_pods = await asyncio.gather(
            self.list_objects("Pod", namespace, names.backup_selector()),
            self.list_objects("Pod", namespace, names.selector()),
        )
        runs = []
        for pod in backup_pods:
            for c in (pod.get("status") or {}).get("containerStatuses") or []:
                t = (c.get("state") or {}).get("terminated")
                if c.get("name") == "backup" and t:
                    runs.append(
                        run_of(
                            pod["metadata"]["name"],
                            _unix(t.get("finishedAt")),
                            int(t.get("exitCode", 1)),
                            str(t.get("message") or t.get("reason") or ""),
                        )
                    )
        refusals = []
        for pod in node_pods:
            parsed = names.parse_pod(pod["metadata"]["name"], orgs)
            if parsed is None:
                continue
            for c in (pod.get("status") or {}).get("initContainerStatuses") or []:
                if c.get("name") != "restore":
                    continue
                st = c.get("state") or {}
                t = st.get("terminated") or (c.get("lastState") or {}).get("terminated")
                if t and int(t.get("exitCode", 0)) != 0 and not st.get("running"):
                    doc = parse_report(str(t.get("message") or ""))
                    why = str(doc.get("error") or t.get("message") or t.get("reason") or "")
                    refusals.append(RestoreRefusal(pod["metadata"]["name"], parsed[0], why[:500]))
        return runs, refusals

    # ----------------------------------------------------------------------- deletion

    async def delete_consortium(
        self, namespace: str, names: Names, orgs: tuple[str, ...], delete_volumes: bool
    ) -> list[str]:
        """Remove the consortium's workloads, Services, PDB, ConfigMaps and Secrets, and its
        ledger PVCs if `delete_volumes`. Returns what was deleted (kind/name)."""
        targets: list[tuple[str, str]] = [
            *(("StatefulSet", names.statefulset(o)) for o in orgs),
            ("PodDisruptionBudget", names.pdb),
            ("NetworkPolicy", names.network_policy),
            ("Service", names.client_service),
            ("Service", names.peers_service),
            ("ConfigMap", names.config_configmap),
            ("ConfigMap", names.genesis_configmap),
            *(("Secret", names.keys_secret(o)) for o in orgs),
            *(("Secret", names.tls_secret(o)) for o in orgs),
            *(("Secret", names.ca_secret(o)) for o in orgs),
            *(("Secret", names.client_secret(o)) for o in orgs),
            ("Secret", names.operator_client_secret),
            ("Secret", names.admin_secret),
            *(("Secret", names.org_admin_secret(o)) for o in orgs),
        ]
        # StatefulSets of organisations no longer in the spec (cannot happen through the CRD,
        # but a stale object must not survive its consortium)
        for sts in await self.list_objects(
            "StatefulSet",
            namespace,
            {
                "app.kubernetes.io/instance": names.consortium,
                "app.kubernetes.io/managed-by": FIELD_MANAGER,
            },
        ):
            key = ("StatefulSet", sts["metadata"]["name"])
            if key not in targets:
                targets.insert(0, key)
        deleted = []
        for kind, name in targets:
            if await self.delete(kind, namespace, name):
                deleted.append(f"{kind}/{name}")
        if delete_volumes:
            for pvc in await self.list_objects(
                "PersistentVolumeClaim", namespace, names.selector()
            ):
                if await self.delete("PersistentVolumeClaim", namespace, pvc["metadata"]["name"]):
                    deleted.append(f"PersistentVolumeClaim/{pvc['metadata']['name']}")
        return deleted


def _unix(ts: object) -> int:
    """An RFC 3339 time of the API (e.g. 2026-12-01T03:00:07Z) as unix seconds; 0 if absent."""
    if not isinstance(ts, str) or not ts:
        return 0
    try:
        return int(dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


class Observation(NamedTuple):
    """What `observe` read: the observed world (public keys only) and, for a TLS consortium,
    the operator's own client TLS Secret's entries (None: absent) — its private key leaves
    this module for the gRPC calls to the nodes, as `secret_data` would hand it over."""

    observed: Observed
    operator_client: dict[str, bytes] | None


@dataclass(frozen=True, slots=True)
class Applied:
    """One object as this process last applied it: the manifest's digest, when (monotonic),
    the resourceVersion the apiserver answered, its kind, namespace and consortium."""

    digest: str
    at: float
    rv: str
    kind: str
    namespace: str
    instance: str

    def of(self, namespace: str, instance: str) -> bool:
        return self.namespace == namespace and self.instance == instance


def _tls_observed(
    by_name: Mapping[str, Mapping[str, Any] | None], names: Names, orgs: tuple[str, ...]
) -> Observed:
    """The consortium's TLS material as the PKI plan needs it, from its Secrets (`by_name`):
    CA certificates, node TLS and client TLS Secret entries, private keys reduced to their
    entry name (b"")."""
    clients = [names.client_secret(o) for o in orgs] + [names.operator_client_secret]
    wanted = [*(names.ca_secret(o) for o in orgs), *(names.tls_secret(o) for o in orgs)]
    got = [_decoded(by_name[n]) for n in [*wanted, *clients]]
    cas, tls, client = got[: len(orgs)], got[len(orgs) : 2 * len(orgs)], got[2 * len(orgs) :]
    ca_certs, incomplete = {}, []
    for org, data in zip(orgs, cas, strict=True):
        if data is None:
            continue
        if "ca.pem" in data and "ca.key" in data:
            ca_certs[org] = data["ca.pem"]
        else:
            incomplete.append(org)
    return Observed(
        ca_certs=ca_certs,
        ca_incomplete=tuple(incomplete),
        tls_entries={o: _public(d) for o, d in zip(orgs, tls, strict=True) if d is not None},
        client_dirs={c: _public(d) for c, d in zip(clients, client, strict=True) if d is not None},
    )


def _tls_secret_names(names: Names, orgs: tuple[str, ...]) -> list[str]:
    """The Secrets of a TLS consortium beyond the keys': CAs, node TLS, client TLS (the
    organisations' and the operator's own)."""
    return [
        *(names.ca_secret(o) for o in orgs),
        *(names.tls_secret(o) for o in orgs),
        *(names.client_secret(o) for o in orgs),
        names.operator_client_secret,
    ]


def _decoded(secret: Mapping[str, Any] | None) -> dict[str, bytes] | None:
    """A Secret's entries, base64-decoded; None for an absent Secret."""
    if secret is None:
        return None
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def _public(entries: Mapping[str, bytes]) -> dict[str, bytes]:
    """Secret entries with every private key (`*.key`, a member key file) reduced to its
    presence (b"")."""
    return {k: b"" if k.endswith(".key") or k == MEMBER_KEY_FILE else v for k, v in entries.items()}


# --------------------------------------------------------------------------- watching

# metadata only (PartialObjectMetadata): a pass reads what it needs itself; the watch only
# says which object changed, so no StatefulSet or Secret body is sent, parsed or kept
_META_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
_META = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
_KINDS = {plural: kind for kind, (_prefix, plural) in _PATHS.items()}


def _key(meta: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, name) of an object's metadata."""
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


class MetaEvent(NamedTuple):
    """One object's change as a metadata watch tells it: `rv` None when it was deleted."""

    kind: str
    namespace: str
    name: str
    labels: Mapping[str, str]
    rv: str | None


class MetadataWatch:
    """LIST + WATCH of the metadata of one kind (`plural` of `group`/`version`) in one
    namespace, or all (None), filtered server-side by `selector`, in a daemon thread of its
    own (`start`; `stop`). `on_event` is called in that thread for every object the first
    LIST shows, and for every change after; a re-LIST (the watch expired: 410, or the
    connection broke) also reports, as deleted, what it no longer shows — so a deletion
    during a gap is not missed. Bookmarks keep the resume version fresh. Errors are retried
    with a growing pause (at most MAX_BACKOFF s), never raised."""

    MAX_BACKOFF = 30.0

    def __init__(
        self,
        api: k8s.ApiClient,
        resource: tuple[str, str, str],
        namespace: str | None,
        selector: str,
        on_event: Callable[[MetaEvent], None],
        timeout_seconds: int = 300,
    ) -> None:
        group, version, plural = resource
        base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
        ns = f"/namespaces/{quote(namespace)}" if namespace else ""
        self.path = f"{base}{ns}/{plural}"
        self.kind = _KINDS.get(plural, plural)
        self.api = api
        self.selector = selector
        self.on_event = on_event
        self.timeout_seconds = timeout_seconds
        self._stop = threading.Event()
        # (namespace, name) -> resourceVersion of every object the watch last showed
        self.known: dict[tuple[str, str], str] = {}

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"watch {self.kind}", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _call(self, query: Mapping[str, str], accept: str, stream: bool) -> Any:
        timeout = (10, self.timeout_seconds + 30) if stream else 30
        resp = _send(self.api, "GET", self.path, {"Accept": accept}, query=query, timeout=timeout)
        status = int(resp.status)
        if not 200 <= status < 300:
            raise _failure("GET", self.path, status, resp.read())
        if stream:
            return resp.response  # urllib3's, read as it arrives
        return json.loads(resp.read())

    def _report(self, meta: Mapping[str, Any], deleted: bool) -> None:
        key = _key(meta)
        rv = None if deleted else str(meta.get("resourceVersion", ""))
        if rv is None:
            self.known.pop(key, None)
        else:
            self.known[key] = rv
        try:
            self.on_event(MetaEvent(self.kind, key[0], key[1], meta.get("labels") or {}, rv))
        except Exception:  # a bug in the callback must not end the watch
            log.exception("watch %s: event handler failed", self.kind)

    def relist(self) -> str:
        """One LIST: reports every object it shows and, as deleted, every one it no longer
        shows; returns the list's resourceVersion to watch from."""
        out = self._call({"labelSelector": self.selector}, _META_LIST, stream=False)
        items = [i.get("metadata") or {} for i in out.get("items") or []]
        shown = {_key(m) for m in items}
        for ns, name in [k for k in self.known if k not in shown]:
            self._report({"namespace": ns, "name": name}, deleted=True)
        for m in items:
            if self.known.get(_key(m)) != str(m.get("resourceVersion", "")):
                self._report(m, deleted=False)
        return str((out.get("metadata") or {}).get("resourceVersion", ""))

    def watch_once(self, rv: str) -> str | None:
        """One WATCH from `rv` until the server ends it: the version to resume from, or None
        when it has expired (410) and a re-LIST is needed."""
        query = {
            "labelSelector": self.selector,
            "watch": "1",
            "resourceVersion": rv,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self.timeout_seconds),
        }
        resp = self._call(query, _META, stream=True)
        buf = b""
        try:
            for chunk in resp.stream(65536):
                if self._stop.is_set():
                    return rv
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    ev = json.loads(line)
                    kind, obj = ev.get("type"), ev.get("object") or {}
                    if kind == "ERROR":  # 410 Gone: the version left the server's window
                        return None
                    meta = obj.get("metadata") or {}
                    rv = str(meta.get("resourceVersion") or rv)
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        self._report(meta, deleted=kind == "DELETED")
        finally:
            resp.release_conn()
        return rv

    def _run(self) -> None:
        rv: str | None = None
        pause = 0.5
        while not self._stop.is_set():
            try:
                if rv is None:
                    rv = self.relist()
                rv = self.watch_once(rv)
                pause = 0.5
            except Exception as e:  # connection errors, apiserver restarts, 5xx
                log.warning("watch %s: %s; again in %.1f s", self.kind, str(e)[:200], pause)
                rv = None
                self._stop.wait(pause)
                pause = min(pause * 2, self.MAX_BACKOFF)
