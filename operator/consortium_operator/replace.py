"""Replacing a permanently lost validator by its own organisation (issue 14, ReplaceValidator
under policy SELF): pure planning, called by plan.next_step before rollouts and membership.

A validator is lost when its ledger volume and its key are gone: the chain still lists its
node id, but no key Secret holds the key. The operator never decides that on its own (the
quorum-kubernetes incident: pods that minted new keys by themselves halted a production
network). A person declares it, naming the pod and the validator it replaced, with the
annotation `consortium.dev/replace-validator: <pod>=<node id hex>` on the Consortium.
Then, one step per pass, each shown in status (phase Replacing) and as an event:

  1. check: the pod is one of ours, `<node id>` is a validator of the pod's organisation on
     chain, and no key Secret holds its key (a validator whose key exists is not lost);
  2. stamp the declaration with the time it was accepted (`<pod>=<id>@<RFC 3339>`,
     `Declare`) — the pod's key entry must be gone by then;
  3. wait until the pod's ledger volume is younger than the stamp (the person deletes the
     old PVC and the pod; the StatefulSet makes a new, empty one): a new key never meets
     data older than the declaration;
  4. a new key for the pod (CreateNodeKeys); the pod starts and syncs as a follower;
  5. once it is caught up (and the live validators make a quorum to commit the change): the
     ReplaceValidator{old, new} proposal signed by the pod's own organisation — under SELF
     its own yes vote executes it, no other organisation votes;
  6. once the chain lists the new key instead of the old one, the annotation is removed
     (`Finish`).

Invariants: no key is minted for a pod unless a stamped declaration names a validator of its
organisation whose key no Secret holds and the pod's volume is younger than the stamp; the
validator count never changes (ReplaceValidator, never AddValidator, for the declared pod);
one replacement at a time (one annotation), and nothing else moves while it runs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import plan  # (plan imports this module: names are looked up at call time)
from .model import GROUP

if TYPE_CHECKING:
    from .plan import OrgTarget, Step, _Ctx

ANNOTATION = f"{GROUP}/replace-validator"
PHASE = "Replacing"
_DECLARATION = re.compile(
    r"^(?P<pod>[a-z0-9]([a-z0-9-]*[a-z0-9])?)=(?P<old>[0-9a-f]{64})"
    r"(@(?P<at>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z))?$"
)


@dataclass(frozen=True, slots=True)
class Declaration:
    """What the annotation says: replace validator `old` by a new key for `pod`; `at` is the
    operator's acceptance stamp (RFC 3339 UTC, seconds), "" until stamped."""

    pod: str
    old: bytes
    at: str = ""

    @classmethod
    def parse(cls, text: str) -> Declaration | None:
        m = _DECLARATION.match(text.strip())
        if m is None:
            return None
        return cls(m["pod"], bytes.fromhex(m["old"]), m["at"] or "")

    def text(self) -> str:
        base = f"{self.pod}={self.old.hex()}"
        return f"{base}@{self.at}" if self.at else base


@dataclass(frozen=True, slots=True)
class Declare:
    """Accept the declaration: stamp the annotation with the current time (reconcile's
    clock); volumes from before the stamp are old data."""

    declaration: Declaration
    org: str

    def __str__(self) -> str:
        d = self.declaration
        return (
            f"replacing lost validator {d.old.hex()[:16]} of {self.org} by a new key for "
            f"{d.pod}: declared; delete PVC data-{d.pod} and pod {d.pod} if they still exist"
        )


@dataclass(frozen=True, slots=True)
class Finish:
    """The chain lists the new key: remove the annotation."""

    declaration: Declaration
    new: bytes

    def __str__(self) -> str:
        d = self.declaration
        return f"validator {d.old.hex()[:16]} replaced by {self.new.hex()[:16]} ({d.pod})"


def step(ctx: _Ctx, targets: dict[str, OrgTarget]) -> Step | None:  # noqa: C901 -- one check per step of the module docstring
    """The next step of the declared replacement, or None when none is declared."""
    o, names = ctx.o, ctx.names
    if o.replacement is None:
        return None

    def blocked(reason: str, message: str) -> Step:
        return plan.Step(plan.Blocked(reason, f"{ANNOTATION}: {message}"), targets, "Degraded")

    d = Declaration.parse(o.replacement)
    if d is None:
        return blocked(
            "ReplacementInvalid",
            f"{o.replacement!r} must be <pod>=<the lost validator's node id, 64 hex>",
        )
    where = names.parse_pod(d.pod, tuple(org.name for org in ctx.d.organizations))
    if where is None or where[1] >= targets[where[0]].replicas:
        return blocked("ReplacementInvalid", f"{d.pod} is not a running pod of this consortium")
    org = where[0]
    if ctx.vset is None:
        return plan.Step(
            plan.Wait("WaitingForNodes", "waiting for a node to report the chain's validators"),
            targets,
            PHASE,
        )
    vals = ctx.validators()
    new = o.node_keys.get(d.pod)
    if d.old not in vals:
        if new is not None and new in vals and d.at:
            return plan.Step(Finish(d, new), targets, PHASE)
        return blocked("ReplacementInvalid", f"{d.old.hex()[:16]} is not a validator on chain")
    if vals[d.old] != org:
        return blocked(
            "ReplacementInvalid",
            f"validator {d.old.hex()[:16]} belongs to {vals[d.old]}, not to {org} ({d.pod}): "
            "an organisation replaces only its own validators",
        )
    holder = o.pod_of_key(d.old)
    if holder is not None:
        return blocked(
            "KeyNotLost",
            f"the key of validator {d.old.hex()[:16]} is in Secret {names.keys_secret(org)} "
            f"(pod {holder}): a validator whose key exists is not lost; restart its pod instead",
        )
    if not d.at:
        if new is not None:
            return blocked(
                "KeyNotLost",
                f"Secret {names.keys_secret(org)} still holds a key for {d.pod}; delete that "
                "entry, the pod's PVC and the pod first",
            )
        return plan.Step(Declare(d, org), targets, PHASE)
    if new is None:
        # a claim still terminating counts: its old data is there until it is gone
        created = o.volume_created.get(d.pod)
        if (created is not None and created < d.at) or (d.pod in o.volumes and created is None):
            return blocked(
                "OldDataExists",
                f"not creating a new key for {d.pod}: its ledger volume data-{d.pod} is older "
                f"than the declaration ({d.at}); delete it (kubectl delete pvc data-{d.pod} "
                f"--wait=false; kubectl delete pod {d.pod})",
            )
        return plan.Step(plan.CreateNodeKeys(org, (d.pod,)), targets, PHASE)
    change = plan.ReplaceValidator(d.pod, org, d.old, new)
    if not ctx.caught_up(d.pod):
        return plan.Step(
            plan.Wait(
                "ReplacingValidator", f"waiting for {d.pod} to sync as a follower before: {change}"
            ),
            targets,
            PHASE,
        )
    if not o.org_governance:
        return blocked(
            "LegacyGovernance",
            "a legacy single-admin chain: move it to organisations (`consortium gov migrate`) "
            "or replace the validator by hand with the admin key",
        )
    block = ctx.quorum_block(len(vals), len(vals), None)
    if block is not None:
        return blocked("QuorumAtRisk", f"not replacing {d.old.hex()[:16]}: {block}")
    return ctx.govern(change, targets, PHASE)
