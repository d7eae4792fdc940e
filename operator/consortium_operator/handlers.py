"""Kopf handlers for `consortia.consortium.dev`: the decorators and kopf's settings only.
Each hands the object to one pass of consortium_operator.reconcile (parse -> observe -> plan
-> apply -> act -> write status) and turns its `Outcome` into kopf's signals (TemporaryError
= requeue after a short delay, PermanentError = invalid spec, return = converged or followed
by the timer).

- create / update / resume -> `reconcile.reconcile` (level-triggered: a restarted operator
  resumes from whatever it observes; nothing is remembered between passes but the cluster)
  A pass that waits at the retry pace (pods starting, approvals, errors) returns: the timer
  follows it. Only a follow-up sooner than the timer (0.5 s after an action, 1 s while the
  chain applies a membership change) is a TemporaryError — kopf writes each retry's
  progress to the object (a PATCH and a watch event per retry).
- timer -> `reconcile.timer`, every min(CONSORTIUM_RETRY_SECONDS, CONSORTIUM_STATUS_SECONDS):
  the same pass when one is due — at the retry pace while converging, every
  CONSORTIUM_STATUS_SECONDS (Helm value operator.statusSeconds, default 10) once converged,
  so status stays current and drift is repaired; skipped while a pass holds the lock
- delete -> `reconcile.delete` (kopf keeps a finalizer on the object until it returns).
- start-up also starts a metadata watch (kube.MetadataWatch) of each kind the operator
  creates, and pods (reconcile.WATCHED; the apiserver sends only those labelled
  managed-by=consortium-operator), whose events go to `reconcile.wake`: the consortium named
  by the object's instance label gets a pass at its next timer tick. A pass that waits only
  on them (StatefulSets settling, pods becoming ready, no node answering yet) is not polled
  at the retry pace but woken (CONSORTIUM_WATCHED_WAIT_SECONDS is the safety net), and a
  deleted or edited Service, PDB, ConfigMap... is re-applied at the next tick. They are not
  kopf's watches: kopf keeps a memory and a worker per object it watches and parses whole
  bodies (bench operator peak RSS 157.5 MiB with kopf watching them, 142.6 without).
- delete events of consortia -> `gone`: their diff base (MemoryDiffBase, kopf's record of the
  spec last handled, kept in this process) is dropped.

Settings are read once, when this module is imported at start-up (__main__ imports it after
checking them): the timer's interval is fixed when kopf registers it."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import kopf

from . import reconcile as passes
from .diffbase import MemoryDiffBase
from .kube import Kube, MetadataWatch, make_api_client
from .model import GROUP, PLURAL, VERSION
from .settings import Settings

log = logging.getLogger("consortium_operator")
SETTINGS = Settings.from_env()


DIFFBASE = MemoryDiffBase()


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # handling progress in annotations (the status schema is ours alone), the diff base in
    # this process (MemoryDiffBase)
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = DIFFBASE
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    # the namespace the operator runs in (the chart sets POD_NAMESPACE): its NetworkPolicy
    # rule keeps the operator's gRPC access to node client ports when those are restricted
    env = passes.Env(
        SETTINGS,
        Kube(
            await asyncio.to_thread(make_api_client),
            reapply_seconds=SETTINGS.reapply_seconds,
        ),
        os.environ.get("POD_NAMESPACE") or None,
    )
    memo["env"] = env
    # metadata watches of the kinds the operator creates, in the namespaces it serves (from
    # __main__'s --namespace; none: all), each in its own thread and HTTP connection
    namespaces = list(memo.get("namespaces") or [None])
    watch_api = await asyncio.to_thread(make_api_client, len(passes.WATCHED) * len(namespaces))
    on_event = passes.watch_events(env, asyncio.get_running_loop())
    watches = [
        MetadataWatch(watch_api, resource, ns, passes.MANAGED, on_event)
        for resource in passes.WATCHED
        for ns in namespaces
    ]
    for w in watches:
        w.start()
    memo["watches"] = watches


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    for w in memo.get("watches") or []:
        w.stop()


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
async def reconcile(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    events = passes.Events(
        lambda r, m: kopf.info(body, reason=r, message=m),
        lambda r, m: kopf.warn(body, reason=r, message=m),
    )
    out = await passes.reconcile(memo["env"], passes.Subject.of(body), events)
    if out.permanent:
        raise kopf.PermanentError(out.message)
    if out.requeue is not None and out.requeue < SETTINGS.timer_seconds:
        raise kopf.TemporaryError(out.message, delay=out.requeue)
    if out.requeue is not None:  # the timer's passes follow it
        passes.log_outcome(str(body.metadata.get("name")), out, logging.INFO)


@kopf.timer(
    GROUP,
    VERSION,
    PLURAL,
    interval=SETTINGS.timer_seconds,
    initial_delay=SETTINGS.timer_seconds,
)
async def report(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    if body.metadata.get("deletionTimestamp"):
        return
    events = passes.Events(
        lambda r, m: kopf.info(body, reason=r, message=m),
        lambda r, m: kopf.warn(body, reason=r, message=m),
    )
    # kopf's body is live: read when the pass gets its timer slot (reconcile.timer)
    out = await passes.timer(memo["env"], lambda: passes.Subject.of(body), events)
    if out is not None and out.requeue is not None:  # the next timer tick is the retry
        passes.log_outcome(str(body.metadata.get("name")), out, logging.DEBUG)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def finalize(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    events = passes.Events(
        lambda r, m: kopf.info(body, reason=r, message=m),
        lambda r, m: kopf.warn(body, reason=r, message=m),
    )
    out = await passes.delete(memo["env"], passes.Subject.of(body), events)
    if out.requeue is not None:
        raise kopf.TemporaryError(out.message, delay=out.requeue)


@kopf.on.event(GROUP, VERSION, PLURAL, when=lambda event, **_: event.get("type") == "DELETED")
async def gone(body: kopf.Body, **_: Any) -> None:
    DIFFBASE.forget(str(body.metadata.uid))
