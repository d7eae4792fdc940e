"""What kube.Kube sends, over a recording transport (its one HTTP method `_request`
replaced): a manifest applied unchanged is not sent again within the resync period, and is
sent again after it, after its content changes, after this module deleted it or read it
as absent; `get_named` reads a consortium's Secrets with one LIST and falls back to a GET
for a name the LIST lacks. And reconcile.write_status sends a status only when it differs
from the one this process last wrote. The same calls against a real kube-apiserver run in
tests/integration/operator."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from consortium_operator import reconcile
from consortium_operator.kube import Kube, KubeError
from consortium_operator.model import Names, Owner
from consortium_operator.settings import Settings

pytestmark = pytest.mark.unit

NS = "ns"


class Recording(Kube):
    """Kube whose HTTP requests are recorded and answered from `objects` (path -> object)."""

    def __init__(self, objects: dict[str, dict[str, Any]] | None = None) -> None:
        self.now = 0.0
        super().__init__(api=None, reapply_seconds=60.0, monotonic=lambda: self.now)  # type: ignore[arg-type]
        self.objects = objects or {}
        self.sent: list[tuple[str, str]] = []

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        self.sent.append((method, path))
        if method == "GET" and query and "labelSelector" in query:
            return {"items": [o for p, o in self.objects.items() if p.startswith(path + "/")]}
        if method == "GET":
            return self.objects.get(path)
        if method == "DELETE":
            return self.objects.pop(path, None)
        return {}


def cm(name: str, value: str, instance: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    if instance is not None:
        meta["labels"] = {"app.kubernetes.io/instance": instance}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": value}}


def patches(k: Recording) -> int:
    return sum(1 for m, _ in k.sent if m == "PATCH")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_an_unchanged_manifest_is_applied_once_per_resync_period() -> None:
    k = Recording()
    run(k.apply([cm("a", "1"), cm("b", "1")]))
    run(k.apply([cm("a", "1"), cm("b", "1")]))
    assert patches(k) == 2  # the second pass sent nothing
    run(k.apply([cm("a", "2"), cm("b", "1")]))
    assert patches(k) == 3  # only the changed one
    k.now = 59.9
    run(k.apply([cm("a", "2"), cm("b", "1")]))
    assert patches(k) == 3
    k.now = 60.0  # b was last sent at 0: due (a at 0 too, its content changed at 0)
    run(k.apply([cm("a", "2"), cm("b", "1")]))
    assert patches(k) == 5


def test_an_object_deleted_or_read_as_absent_is_applied_again_at_once() -> None:
    k = Recording()
    run(k.apply([cm("a", "1"), cm("b", "1")]))
    run(k.delete("ConfigMap", NS, "a"))  # by the operator
    assert run(k.get("ConfigMap", NS, "b")) is None  # by someone else: observed absent
    run(k.apply([cm("a", "1"), cm("b", "1")]))
    assert patches(k) == 4


def test_a_failed_apply_is_sent_again() -> None:
    class Failing(Recording):
        fail = True

        def _request(self, method: str, path: str, **kw: Any) -> Any:
            if method == "PATCH" and self.fail:
                self.fail = False
                self.sent.append((method, path))
                from consortium_operator.kube import KubeError

                raise KubeError(500, "etcd timeout")
            return super()._request(method, path, **kw)

    k = Failing()
    with pytest.raises(Exception, match="etcd timeout"):
        run(k.apply([cm("a", "1")]))
    run(k.apply([cm("a", "1")]))
    assert patches(k) == 2


def test_get_named_lists_once_and_gets_only_what_the_list_lacks() -> None:
    base = f"/api/v1/namespaces/{NS}/secrets"
    objects = {
        f"{base}/c-a-keys": {"metadata": {"name": "c-a-keys"}},
        f"{base}/c-b-keys": {"metadata": {"name": "c-b-keys"}},
        f"{base}/other": {"metadata": {"name": "other"}},
    }

    class Unlabelled(Recording):  # the LIST (by label) misses c-b-keys, restored by hand
        def _request(self, method: str, path: str, **kw: Any) -> Any:
            out = super()._request(method, path, **kw)
            if kw.get("query"):
                out["items"] = [o for o in out["items"] if o["metadata"]["name"] != "c-b-keys"]
            return out

    k = Unlabelled(objects)
    got = run(k.get_named("Secret", NS, {"x": "y"}, ["c-a-keys", "c-b-keys", "c-c-keys"]))
    assert got["c-a-keys"] == objects[f"{base}/c-a-keys"]
    assert got["c-b-keys"] == objects[f"{base}/c-b-keys"]
    assert got["c-c-keys"] is None
    assert sorted(k.sent) == [
        ("GET", base),
        ("GET", f"{base}/c-b-keys"),
        ("GET", f"{base}/c-c-keys"),
    ]


def test_observe_reads_a_consortium_in_five_requests() -> None:
    """Secrets (admin, keys, org admins, clients: 7 for two organisations), StatefulSets,
    ConfigMaps, pods, volumes: one LIST each, when every object is labelled — plus one GET
    for each named object the LIST lacks (here the two ConfigMaps, not written yet)."""
    names = Names("c")
    base = f"/api/v1/namespaces/{NS}"
    objects = {
        f"{base}/secrets/{n}": {"metadata": {"name": n}}
        for n in [
            names.admin_secret,
            *(
                f(o)
                for o in ("a", "b")
                for f in (names.keys_secret, names.org_admin_secret, names.client_secret)
            ),
        ]
    }
    objects.update(
        {
            f"/apis/apps/v1/namespaces/{NS}/statefulsets/{names.statefulset(o)}": {
                "metadata": {"name": names.statefulset(o)}
            }
            for o in ("a", "b")
        }
    )
    k = Recording(objects)
    run(k.observe(NS, names, ("a", "b")))
    assert len(k.sent) == 5 + 2, k.sent
    assert sum(1 for _, p in k.sent if "/configmaps/" in p) == 2


def svc(name: str, instance: str = "c") -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "consortium-node", "app.kubernetes.io/instance": instance}
    meta = {"name": name, "namespace": NS, "labels": labels}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {}}


def test_an_applied_object_deleted_or_changed_by_someone_else_is_applied_on_the_next_pass() -> None:
    """observe reads the consortium's StatefulSets and ConfigMaps for planning: one the read
    lacks, or holds at another resourceVersion, is sent again by the next apply. The other
    kinds it applies are not read at all (their drift comes from watch events, `notice`)."""
    names = Names("c")
    c = names.config_configmap
    k = Recording()
    path = f"/api/v1/namespaces/{NS}/configmaps/{c}"
    mine = [cm(c, "1", "c"), svc("c-client")]
    run(k.apply(mine))  # the recording answers rv ""
    k.objects[path] = {"metadata": {"name": c, "resourceVersion": ""}}
    k.sent.clear()
    run(k.observe(NS, names, ("a",)))
    assert not [p for _, p in k.sent if "/services" in p]  # not needed for planning: not read
    run(k.apply(mine))
    assert patches(k) == 0  # both there as applied
    del k.objects[path]  # kubectl delete configmap
    run(k.observe(NS, names, ("a",)))
    run(k.apply(mine))
    assert [p for m, p in k.sent if m == "PATCH"] == [path]
    k.objects[path] = {"metadata": {"name": c, "resourceVersion": "77"}}  # kubectl edit
    run(k.observe(NS, names, ("a",)))
    run(k.apply(mine))
    assert patches(k) == 2
    other = Recording()  # another consortium's objects are not this one's business
    run(other.apply([cm("d-config", "1", "d")]))
    run(other.observe(NS, names, ("a",)))
    run(other.apply([cm("d-config", "1", "d")]))
    assert patches(other) == 1


def test_a_watch_event_during_our_apply_is_judged_by_that_apply() -> None:
    """The watch may deliver an object's event before the PATCH's answer: Kube.notice holds
    it (no news) and `apply` judges it by arrival order — older versions than ours, or our
    own, leave the object as applied; a version after ours (another writer) makes the next
    apply send it again."""

    class Racing(Recording):
        def __init__(self, during: list[str | None]) -> None:
            super().__init__()
            self.during = during
            self.said: list[bool] = []

        def _request(self, method: str, path: str, **kw: Any) -> Any:
            super()._request(method, path, **kw)
            if method != "PATCH":
                return None
            self.said += [self.notice("Service", NS, "c-client", rv) for rv in self.during]
            return {"metadata": {"resourceVersion": "5"}}

    cases: list[tuple[list[str | None], int]] = [
        (["5"], 0),
        (["4", "5"], 0),
        (["4"], 0),
        (["5", "9"], 1),
        (["5", None], 1),
    ]
    for during, again in cases:
        k = Racing(during)
        run(k.apply([svc("c-client")]))
        assert k.said == [False] * len(during)  # held: never news while in flight
        k.during = []
        run(k.apply([svc("c-client")]))
        assert patches(k) == 1 + again, during


def test_a_watch_event_of_an_object_deleted_or_changed_makes_the_next_apply_send_it() -> None:
    """Kube.notice (reconcile.wake): a deletion, or another resourceVersion than our apply's
    answer, forgets the object at once — no LIST needed, whatever check_seconds says; the
    event of our own apply (its version) changes nothing and is no news (no pass woken),
    nor does an unknown object change anything."""

    class Answering(Recording):
        def _request(self, method: str, path: str, **kw: Any) -> Any:
            super()._request(method, path, **kw)
            return {"metadata": {"resourceVersion": "5"}} if method == "PATCH" else None

    k = Answering()
    run(k.apply([svc("c-client"), svc("c-peers"), cm("a", "1")]))
    assert not k.notice("Service", NS, "c-client", "5")  # our own apply's event: no news
    assert k.notice("Service", NS, "c-other", None)  # never applied here
    assert k.notice("Lease", NS, "c-client", None)  # a kind this module does not write
    assert k.notice("Pod", NS, "c-a-0", "5")  # what others write is news
    run(k.apply([svc("c-client"), svc("c-peers"), cm("a", "1")]))
    assert patches(k) == 3
    assert k.notice("Service", NS, "c-client", None)  # kubectl delete service c-client
    assert k.notice("ConfigMap", NS, "a", "6")  # kubectl edit configmap a
    run(k.apply([svc("c-client"), svc("c-peers"), cm("a", "1")]))
    assert patches(k) == 5
    assert [p for m, p in k.sent[-2:]] == [
        f"/api/v1/namespaces/{NS}/services/c-client",
        f"/api/v1/namespaces/{NS}/configmaps/a",
    ]


class StatusKube(Recording):
    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.sent.append(("PATCH", f"status of {name}"))


def test_a_status_equal_to_the_last_written_is_not_sent_again() -> None:
    k = StatusKube()
    env = reconcile.Env(Settings(), k)
    owner = Owner("c", NS, "uid-1")
    spec = {
        "chainId": "c",
        "consensus": {"type": "raft"},
        "organizations": [{"name": "a", "validators": 1}],
    }
    p = reconcile.Pass(
        env, reconcile.Subject(owner, spec, generation=1), reconcile.Events(print, print)
    )

    async def once() -> None:
        reconcile.parse(p)
        reconcile.plan_step(p)
        await reconcile.write_status(p)

    run(once())
    run(once())
    assert patches(k) == 1
    env.written.clear()  # an operator restart: nothing known, so it writes
    run(once())
    assert patches(k) == 2


def _genesis_cm(names: Names, legacy: bool) -> dict[str, Any]:
    """A genesis ConfigMap of a one-validator chain: legacy (one consortium admin) or
    governed by its organisation."""
    from consortium_operator import genesis
    from consortium_operator.model import ConsortiumSpec

    sp = ConsortiumSpec.parse(
        {
            "chainId": "t",
            "consensus": {"type": "raft"},
            "organizations": [{"name": "a", "validators": 1}],
        }
    )
    keys = {names.pod("a", 0): b"\x01" * 32}
    g = (
        genesis.build(sp, names, keys, b"\x09" * 32, 0)
        if legacy
        else genesis.build_governed(sp, names, keys, genesis.OrgKeys({"a": b"\x02" * 32}), 0)
    )
    meta = {"name": names.genesis_configmap, "namespace": NS}
    return {"metadata": meta, "data": {"genesis.json": genesis.canonical_json(g)}}


def _tls_consortium(names: Names, legacy: bool) -> dict[str, dict[str, Any]]:
    """Every Secret of a TLS consortium of organisation a but the consortium admin's (which
    only a legacy chain has), its StatefulSet and both ConfigMaps."""
    base = f"/api/v1/namespaces/{NS}"
    secret_names = [
        names.keys_secret("a"),
        names.org_admin_secret("a"),
        names.client_secret("a"),
        names.ca_secret("a"),
        names.tls_secret("a"),
        names.operator_client_secret,
    ]
    objects: dict[str, dict[str, Any]] = {
        f"{base}/secrets/{n}": {"metadata": {"name": n}} for n in secret_names
    }
    objects[f"{base}/configmaps/{names.genesis_configmap}"] = _genesis_cm(names, legacy)
    objects[f"{base}/configmaps/{names.config_configmap}"] = {
        "metadata": {"name": names.config_configmap}
    }
    sts = names.statefulset("a")
    objects[f"/apis/apps/v1/namespaces/{NS}/statefulsets/{sts}"] = {"metadata": {"name": sts}}
    return objects


def test_a_tls_pass_reads_every_secret_in_one_request_and_no_absent_admin_secret() -> None:
    """Keys, organisation admins, clients, CAs, node TLS and the operator's client TLS: one
    LIST of Secrets for the whole pass (observe_world: it read them with two LISTs and a GET
    of the operator's client Secret). An organisation-governed chain has no consortium admin
    Secret: it is not read by name (it was, on every pass, finding nothing)."""
    names = Names("c")
    k = Recording(_tls_consortium(names, legacy=False))
    p = reconcile.Pass(
        reconcile.Env(Settings(), k),
        reconcile.Subject(
            Owner("c", NS, "u"),
            {
                "chainId": "t",
                "consensus": {"type": "raft"},
                "organizations": [{"name": "a", "validators": 1}],
            },
        ),
        reconcile.Events(lambda r, m: None, lambda r, m: None),
    )
    reconcile.parse(p)
    observed = run(reconcile.observe_world(p))
    secrets = [path for m, path in k.sent if "/secrets" in path]
    assert secrets == [f"/api/v1/namespaces/{NS}/secrets"], k.sent
    assert observed.has_genesis and observed.org_governance
    assert set(observed.client_dirs) == {names.client_secret("a"), names.operator_client_secret}


def test_a_legacy_chain_reads_its_admin_secret_by_name_when_the_list_lacks_it() -> None:
    """A legacy single-admin chain's admin Secret restored by hand without labels is still
    found (the one case where observe reads it by name)."""
    names = Names("c")
    k = Recording(_tls_consortium(names, legacy=True))
    run(k.observe(NS, names, ("a",), tls=True))
    secrets = [path for m, path in k.sent if "/secrets" in path]
    assert secrets == [
        f"/api/v1/namespaces/{NS}/secrets",
        f"/api/v1/namespaces/{NS}/secrets/{names.admin_secret}",
    ], k.sent


class Versioned(Kube):
    """Kube answering with resourceVersions, recording each request's query; `fail_rv`
    answers a LIST that asks for a version with that HTTP status (a cache that did not
    reach it in time)."""

    def __init__(self) -> None:
        super().__init__(api=None)  # type: ignore[arg-type]
        self.queries: list[tuple[str, str, dict[str, str]]] = []
        self.answers: dict[str, Any] = {}
        self.fail_rv = 0

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        q = dict(query or {})
        self.queries.append((method, path, q))
        if self.fail_rv and "resourceVersion" in q:
            raise KubeError(self.fail_rv, "Timeout: Too large resource version")
        return self.answers.get(path, {})


def rv_query(k: Versioned) -> dict[str, str]:
    q = k.queries[-1][2]
    return {key: q[key] for key in ("resourceVersion", "resourceVersionMatch") if key in q}


def test_a_list_is_as_new_as_every_object_of_its_kind_this_process_wrote_or_read() -> None:
    k = Versioned()
    run(k.list_objects("ConfigMap", NS, {"x": "y"}))
    assert rv_query(k) == {}  # nothing seen yet: the consistent LIST
    k.answers[f"/api/v1/namespaces/{NS}/configmaps/a"] = {"metadata": {"resourceVersion": "17"}}
    run(k.apply([cm("a", "1")]))
    run(k.list_objects("ConfigMap", NS, {"x": "y"}))
    assert rv_query(k) == {"resourceVersion": "17", "resourceVersionMatch": "NotOlderThan"}
    run(k.list_objects("ConfigMap", "other", {"x": "y"}))  # one storage for every namespace
    assert rv_query(k)["resourceVersion"] == "17"
    run(k.list_objects("Secret", NS, {"x": "y"}))  # another resource: versions not comparable
    assert rv_query(k) == {}
    # a list's items raise the floor; the list's own version (maybe etcd's global revision,
    # which this resource's cache reaches only at its next event) does not
    k.answers[f"/api/v1/namespaces/{NS}/configmaps"] = {
        "metadata": {"resourceVersion": "99"},
        "items": [{"metadata": {"resourceVersion": "20"}}, {"metadata": {"resourceVersion": "5"}}],
    }
    run(k.list_objects("ConfigMap", NS, {"x": "y"}))
    run(k.list_objects("ConfigMap", NS, {"x": "y"}))
    assert rv_query(k)["resourceVersion"] == "20"


@pytest.mark.parametrize("status", [504, 410])
def test_a_list_the_cache_cannot_answer_in_time_is_read_consistently(status: int) -> None:
    k = Versioned()
    k.answers[f"/api/v1/namespaces/{NS}/configmaps/a"] = {"metadata": {"resourceVersion": "17"}}
    run(k.apply([cm("a", "1")]))
    k.fail_rv = status
    assert run(k.list_objects("ConfigMap", NS, {"x": "y"})) == []
    assert rv_query(k) == {}  # the retry, without a version
    assert "resourceVersion" in k.queries[-2][2]


def test_other_list_errors_are_not_retried() -> None:
    k = Versioned()
    k.answers[f"/api/v1/namespaces/{NS}/configmaps/a"] = {"metadata": {"resourceVersion": "17"}}
    run(k.apply([cm("a", "1")]))
    k.fail_rv = 403
    with pytest.raises(KubeError):
        run(k.list_objects("ConfigMap", NS, {"x": "y"}))
