"""Kopf handlers for `consortia.consortium.dev`. Each decorated function is thin: it delegates
to one reconcile pass (below), which parses the spec (model), observes (kube + nodes), asks
plan for the next step, renders and applies the workloads (render, kube), performs at most one
action, writes status, and raises `kopf.TemporaryError` until the plan reports Converged.

- create / update / resume -> `reconcile` (level-triggered: a restarted operator resumes from
  whatever it observes; nothing is remembered between passes but the cluster itself)
- timer -> `report`: the same pass every 10 s, so status stays current (heights, leader,
  ready nodes, Degraded) and drift after convergence is repaired
- delete -> `finalize` (kopf keeps a finalizer on the object until it returns): removes
  workloads, Services, ConfigMaps, Secrets, and the ledger PVCs if deletionPolicy is Delete.

Passes over the same object are serialised by a per-object lock (the timer runs concurrently
with change handlers in kopf)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import kopf

from . import genesis, nodes, pki, plan, status
from .kube import Conflict, Kube, KubeError, make_api_client
from .model import (
    GROUP,
    PLURAL,
    VERSION,
    ConsortiumSpec,
    Names,
    Observed,
    Owner,
    SpecError,
)
from .nodes import ClientTLS, GovernanceError
from .render import Renderer
from .settings import Settings

log = logging.getLogger("consortium_operator")
STATUS_INTERVAL = 10.0


# --------------------------------------------------------------------------- kopf handlers


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # progress and diff-base in annotations: the status schema is ours alone
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    memo["settings"] = Settings.from_env()
    memo["kube"] = Kube(await asyncio.to_thread(make_api_client))
    memo["locks"] = {}
    # the namespace the operator runs in (the chart sets POD_NAMESPACE): its NetworkPolicy
    # rule keeps the operator's gRPC access to node client ports when those are restricted
    memo["operator_namespace"] = os.environ.get("POD_NAMESPACE") or None


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
async def reconcile(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await reconcile_pass(body, memo)


@kopf.timer(GROUP, VERSION, PLURAL, interval=STATUS_INTERVAL, initial_delay=STATUS_INTERVAL)
async def report(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    if body.metadata.get("deletionTimestamp"):
        return
    await timer_pass(body, memo)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def finalize(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await delete_pass(body, memo)


# --------------------------------------------------------------------------- passes


def _ctx(body: kopf.Body, memo: kopf.Memo) -> tuple[Settings, Kube, Names, Owner]:
    meta = body.metadata
    name, namespace = str(meta["name"]), str(meta["namespace"])
    owner = Owner(name=name, namespace=namespace, uid=str(meta["uid"]))
    return memo["settings"], memo["kube"], Names(name), owner


def _lock(memo: kopf.Memo, owner: Owner) -> asyncio.Lock:
    locks: dict[str, asyncio.Lock] = memo["locks"]
    return locks.setdefault(owner.uid, asyncio.Lock())


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _creation_ms(body: kopf.Body) -> int:
    ts = str(body.metadata.get("creationTimestamp") or "1970-01-01T00:00:00Z")
    return int(dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


async def _operator_tls(
    kube: Kube, names: Names, owner: Owner, spec: ConsortiumSpec
) -> ClientTLS | None:
    """The operator's client TLS material for this consortium, from its Secret (written by
    `_ensure_tls`). Raises NoClientTLS with TLS on and the Secret not (yet) complete."""
    if not spec.security.tls:
        return None
    data = await kube.secret_data(owner.namespace, names.operator_client_secret) or {}
    try:
        return ClientTLS(data["ca.pem"], data["client.pem"], data["client.key"])
    except KeyError:
        raise NoClientTLS(f"Secret {names.operator_client_secret} is not complete") from None


class NoClientTLS(Exception):
    """The operator has no client certificate for a TLS consortium yet: nodes cannot be
    asked anything (there can be no running node either: certificates come first)."""


async def _observe(
    kube: Kube, settings: Settings, names: Names, owner: Owner, spec: ConsortiumSpec
) -> Observed:
    orgs = tuple(o.name for o in spec.organizations)
    observed = await kube.observe(owner.namespace, names, orgs)
    try:
        tls = await _operator_tls(kube, names, owner, spec)
    except NoClientTLS as e:
        log.debug("%s/%s: not asking nodes: %s", owner.namespace, owner.name, e)
        return observed
    node_status = await nodes.statuses(observed.pods, names, owner.namespace, settings, tls)
    return replace(observed, nodes=node_status)


async def _write_status(
    kube: Kube,
    body: kopf.Body,
    owner: Owner,
    names: Names,
    settings: Settings,
    spec: ConsortiumSpec | None,
    observed: Observed,
    step: plan.Step | None,
    error: str | None = None,
) -> None:
    current: Mapping[str, Any] = body.status
    previous = current.get("conditions") or []
    old_phase = current.get("phase")
    new = status.build(
        spec,
        observed,
        step,
        names,
        owner.namespace,
        int(body.metadata.get("generation") or 0),
        previous,
        _now(),
        settings.max_lag,
        error,
    )
    await kube.patch_status(owner.namespace, owner.name, new)
    if new["phase"] != old_phase:
        kind = kopf.warn if new["phase"] in ("Degraded", "Failed") else kopf.info
        kind(body, reason=f"Phase{new['phase']}", message=new["message"] or new["phase"])


async def reconcile_pass(body: kopf.Body, memo: kopf.Memo) -> None:
    settings, kube, names, owner = _ctx(body, memo)
    try:
        spec = ConsortiumSpec.parse(body.spec)
    except SpecError as e:
        await _write_status(kube, body, owner, names, settings, None, Observed(), None, str(e))
        raise kopf.PermanentError(f"invalid spec: {e}") from None
    async with _lock(memo, owner):
        try:
            observed = await _observe(kube, settings, names, owner, spec)
            step = plan.next_step(spec, observed, names, settings.node_image, settings.max_lag)
            renderer = Renderer(settings, names, owner, memo.get("operator_namespace"))
            cas = await _ensure_tls(body, spec, observed, names, owner, kube, renderer)
            if step.targets is not None:
                await kube.apply(
                    renderer.workloads(
                        spec, step.targets, observed.node_keys, observed.genesis_hash
                    )
                )
            done = await _act(
                step.action, body, spec, observed, names, owner, kube, renderer, settings, cas
            )
            await _write_status(kube, body, owner, names, settings, spec, observed, step)
        except (KubeError, GovernanceError) as e:
            raise kopf.TemporaryError(str(e), delay=settings.retry_seconds) from None
    if isinstance(step.action, plan.Converged):
        return
    delay = settings.retry_seconds * (3 if isinstance(step.action, plan.Blocked) else 1)
    raise kopf.TemporaryError(f"{done or step.action}", delay=0.5 if done else delay)


async def _act(
    action: plan.Action,
    body: kopf.Body,
    spec: ConsortiumSpec,
    observed: Observed,
    names: Names,
    owner: Owner,
    kube: Kube,
    renderer: Renderer,
    settings: Settings,
    cas: Mapping[str, bytes],
) -> str | None:
    """Perform the step's action; returns what was done (None: nothing to do)."""
    if isinstance(action, plan.CreateAdminKey):
        created = await kube.create(renderer.admin_secret(pki.key_file(pki.new_key())))
        if created:
            kopf.info(
                body, reason="KeysCreated", message=f"admin key in Secret {names.admin_secret}"
            )
        return str(action)
    if isinstance(action, plan.CreateNodeKeys):
        secret = renderer.keys_secret(
            action.org, {pod: pki.key_file(pki.new_key()) for pod in action.pods}
        )
        added = await kube.add_secret_entries(secret)
        if added is True:
            kopf.info(
                body,
                reason="KeysCreated",
                message=f"node keys for {', '.join(action.pods)} in Secret "
                f"{names.keys_secret(action.org)}",
            )
        return None if isinstance(added, Conflict) else str(action)
    if isinstance(action, plan.WriteGenesis):
        assert observed.admin_public is not None
        g = genesis.build(
            spec, names, observed.node_keys, observed.admin_public, _creation_ms(body), cas
        )
        cm = renderer.genesis_configmap(genesis.canonical_json(g), g.hash.hex())
        if await kube.create(cm):
            kopf.info(
                body,
                reason="GenesisWritten",
                message=f"genesis {g.hash.hex()[:16]} with {len(g.validators)} validators "
                f"in ConfigMap {names.genesis_configmap}",
            )
        return str(action)
    if isinstance(action, plan.AddOrganization):
        action = dataclasses.replace(action, ca_cert=cas.get(action.org, b""))
    if isinstance(action, plan.AddValidator | plan.RemoveValidator | plan.AddOrganization):
        eps = _governance_endpoints(observed, names, owner, settings)
        admin_key = await kube.read_admin_key(owner.namespace, names)
        try:
            tls = await _operator_tls(kube, names, owner, spec)
        except NoClientTLS as e:
            raise GovernanceError(f"{action}: {e}") from None
        tx = await nodes.governance(eps, spec.chain_id, admin_key, action, settings, tls)
        reason = (
            "OrganizationAdmitted"
            if isinstance(action, plan.AddOrganization)
            else "ValidatorSetChanged"
        )
        kopf.info(body, reason=reason, message=f"{action}: tx {tx[:16]} committed")
        await _await_membership(action, body, spec, names, owner, kube, settings)
        return str(action)
    return None


async def _ensure_tls(
    body: kopf.Body,
    spec: ConsortiumSpec,
    observed: Observed,
    names: Names,
    owner: Owner,
    kube: Kube,
    renderer: Renderer,
) -> dict[str, bytes]:
    """With spec.security.tls: one CA per organisation (created once, before the genesis,
    which lists them) and every node's TLS certificate, (re)issued into the organisation's
    TLS Secret when missing or within certRenewBeforeDays of expiry (nodes reload rotated
    files); then the client TLS directories (`_ensure_client_tls`). Returns organisation -> CA
    certificate PEM. Events name Secrets, never content."""
    if not spec.security.tls:
        return {}
    now = dt.datetime.now(dt.UTC)
    lead = dt.timedelta(days=spec.security.cert_renew_before_days)
    orgs = tuple(o.name for o in spec.organizations)
    cas: dict[str, bytes] = {}
    issuers: dict[str, pki.Issued] = {}
    for org in orgs:
        data = await kube.secret_data(owner.namespace, names.ca_secret(org))
        trusted = observed.ca_trusted_on_chain(org)
        if data is None and trusted is not False:
            # The chain trusts only the CA it lists: a replacement would be refused by every
            # node (and its certificates with it), so a lost CA Secret is an error to fix.
            if trusted:
                raise KubeError(
                    0,
                    f"Secret {names.ca_secret(org)} (the CA of {org}, which the chain trusts) "
                    "is missing: restore it from a backup; a new CA would not be trusted",
                )
            continue  # a new organisation, and no node tells yet whether it is on chain
        if data is None:
            ca = pki.org_ca(org, now, pki.new_tls_key(), pki.serial_from())
            if await kube.create(renderer.ca_secret(org, ca)):
                kopf.info(
                    body,
                    reason="CACreated",
                    message=f"certificate authority of {org} in Secret {names.ca_secret(org)}",
                )
            data = await kube.secret_data(owner.namespace, names.ca_secret(org))
        if data is None or "ca.pem" not in data or "ca.key" not in data:
            raise KubeError(404, f"Secret {names.ca_secret(org)} lacks ca.pem/ca.key")
        ca = pki.Issued(data["ca.pem"], data["ca.key"])
        cas[org] = ca.cert_pem
        issuers[org] = ca
        pods = {
            pod: key
            for pod, key in observed.node_keys.items()
            if (parsed := names.parse_pod(pod, orgs)) is not None and parsed[0] == org
        }
        existing = await kube.secret_data(owner.namespace, names.tls_secret(org)) or {}
        due = pki.certs_to_issue(existing, pods, now, lead)
        if not due:
            continue
        issued = {
            pod: pki.node_tls(
                ca,
                org,
                pod,
                pods[pod],
                renderer.node_dns_names(pod),
                now,
                pki.new_tls_key(),
                pki.serial_from(),
                spec.security.cert_validity_days,
            )
            for pod in due
        }
        if await kube.put_secret_entries(renderer.tls_secret(org, issued)) is True:
            kopf.info(
                body,
                reason="CertificatesIssued",
                message=f"TLS certificates for {', '.join(due)} in Secret {names.tls_secret(org)}",
            )
    await _ensure_client_tls(body, spec, names, owner, kube, renderer, issuers, now, lead)
    return cas


async def _ensure_client_tls(
    body: kopf.Body,
    spec: ConsortiumSpec,
    names: Names,
    owner: Owner,
    kube: Kube,
    renderer: Renderer,
    issuers: Mapping[str, pki.Issued],
    now: dt.datetime,
    lead: dt.timedelta,
) -> None:
    """A client TLS directory per organisation (`<consortium>-<org>-client`, for its users)
    and the operator's own (`<consortium>-operator-client`, issued by the first
    organisation's CA), each (re)written when missing, near expiry, or its trust bundle
    changed."""
    bundle = pki.trust_bundle({org: ca.cert_pem for org, ca in issuers.items()})
    first = spec.organizations[0].name
    wanted = [
        (names.client_secret(o.name), o.name, f"{o.name}-client")
        for o in spec.organizations
        if o.name in issuers  # an organisation whose CA is not settled yet gets none
    ]
    wanted.append((names.operator_client_secret, first, "consortium-operator"))
    for secret, org, cn in wanted:
        existing = await kube.secret_data(owner.namespace, secret)
        if not pki.client_dir_due(existing, bundle, issuers[org].cert_pem, now, lead):
            continue
        issued = pki.client_tls(
            issuers[org],
            org,
            cn,
            now,
            pki.new_tls_key(),
            pki.serial_from(),
            spec.security.cert_validity_days,
        )
        manifest = renderer.client_secret(secret, org, bundle, issued)
        if await kube.put_secret_entries(manifest) is True:
            kopf.info(
                body,
                reason="CertificatesIssued",
                message=f"client certificate {cn} of {org} in Secret {secret}",
            )


def _governance_endpoints(
    observed: Observed, names: Names, owner: Owner, settings: Settings
) -> list[nodes.Endpoint]:
    """Client endpoints of answering nodes, the leader first."""
    leaders = {n.leader for n in observed.nodes.values()}
    order = sorted(
        observed.nodes,
        key=lambda p: (observed.node_keys.get(p) not in leaders, -observed.nodes[p].height, p),
    )
    out = []
    for pod in order:
        ep = nodes.endpoint(observed.pods[pod], names, owner.namespace, settings)
        if ep is not None:
            out.append(ep)
    return out


async def _await_membership(
    action: plan.AddValidator | plan.RemoveValidator | plan.AddOrganization,
    body: kopf.Body,
    spec: ConsortiumSpec,
    names: Names,
    owner: Owner,
    kube: Kube,
    settings: Settings,
) -> None:
    """Until the chain reflects a committed change (a validator change takes effect a couple
    of blocks later; an admitted organisation at once), so the next pass does not plan the
    same change again."""
    for _ in range(int(settings.governance_timeout)):
        observed = await _observe(kube, settings, names, owner, spec)
        if isinstance(action, plan.AddOrganization):
            if action.org in (observed.chain_organizations() or ()):
                return
        elif (action.node_id in dict(observed.validator_set() or ())) == isinstance(
            action, plan.AddValidator
        ):
            return
        await asyncio.sleep(1.0)


async def timer_pass(body: kopf.Body, memo: kopf.Memo) -> None:
    """Every STATUS_INTERVAL: one full pass (observe, act if needed, write status). This is
    what repairs drift after convergence (a deleted StatefulSet or Service, a PDB edited by
    hand) and keeps status current. Skipped while a change handler's pass holds the lock."""
    owner = _ctx(body, memo)[3]
    if _lock(memo, owner).locked():
        return
    try:
        await reconcile_pass(body, memo)
    except (kopf.TemporaryError, kopf.PermanentError) as e:
        log.debug("timer pass of %s/%s: %s", owner.namespace, owner.name, e)


async def delete_pass(body: kopf.Body, memo: kopf.Memo) -> None:
    settings, kube, names, owner = _ctx(body, memo)
    raw: Mapping[str, Any] = body.spec
    orgs = tuple(
        str(o.get("name")) for o in raw.get("organizations") or [] if isinstance(o, Mapping)
    )
    delete_volumes = raw.get("deletionPolicy", "Retain") == "Delete"
    async with _lock(memo, owner):
        try:
            deleted = await kube.delete_consortium(owner.namespace, names, orgs, delete_volumes)
        except KubeError as e:
            raise kopf.TemporaryError(f"deleting: {e}", delay=settings.retry_seconds) from None
    kept = "ledger volumes kept (deletionPolicy Retain)" if not delete_volumes else ""
    kopf.info(
        body,
        reason="Deleted",
        message=f"deleted {len(deleted)} objects" + (f"; {kept}" if kept else ""),
    )
