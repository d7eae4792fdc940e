"""Operator settings: read once at start-up from the environment (`Settings.from_env`) and
passed explicitly to render, plan and status — never read from globals elsewhere.

  CONSORTIUM_NODE_IMAGE       node image when a Consortium has no spec.image
                              (default consortium/node:dev, what `make images` builds)
  CONSORTIUM_CLUSTER_DOMAIN   cluster DNS domain (default cluster.local)
  CONSORTIUM_NODE_ADDRESS     how the operator reaches node pods over gRPC: pod-ip (default)
                              or dns (<pod>.<consortium>-peers.<ns>.svc.<domain>)
  CONSORTIUM_RETRY_SECONDS    delay between reconcile passes while converging (default 5)
  CONSORTIUM_STATUS_SECONDS   delay between passes once converged: status and drift (default 10)
  CONSORTIUM_MAX_LAG          blocks a node may trail the chain and still count as caught up
                              (default 2); a node further than 10x behind sets Degraded
  CONSORTIUM_RPC_TIMEOUT      seconds per gRPC call to a node (default 3)
  CONSORTIUM_REAPPLY_SECONDS  resync period: an unchanged object the operator applied is
                              applied again after this long (default 600). A safety net only:
                              an object a watch event shows deleted or changed by another
                              writer (another resourceVersion) is applied again on the next
                              pass (kube.notice; StatefulSets and ConfigMaps also by what
                              each pass reads, kube.check_applied); at 60 s, 100 consortia
                              re-applied 12 unchanged objects a second
  CONSORTIUM_WATCHED_WAIT_SECONDS  a pass that waits only on objects the operator watches
                              (StatefulSets being created or settling, pods becoming ready,
                              with no node answering yet) is followed by the next watch event
                              on that consortium's objects, and by a timer pass after this long
                              at the latest (default 60; the safety net for a missed event)
  CONSORTIUM_TIMER_PASSES     timer passes (polling at the retry/status pace) running at once
                              (default 4); a spec change's pass never waits for one
  CONSORTIUM_PROPOSAL_TTL     blocks a proposal the operator opens stays open for votes
                              (default 3600: about two hours at the default 2 s empty-block pace)"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Settings:
    node_image: str = "consortium/node:dev"
    cluster_domain: str = "cluster.local"
    node_address: str = "pod-ip"  # pod-ip | dns
    retry_seconds: float = 5.0
    status_seconds: float = 10.0
    max_lag: int = 2
    rpc_timeout: float = 3.0
    governance_timeout: float = 20.0
    proposal_ttl: int = 3600
    reapply_seconds: float = 600.0
    timer_passes: int = 4
    watched_wait_seconds: float = 60.0

    @property
    def timer_seconds(self) -> float:
        """The kopf timer's interval: a converging object's passes follow it at the retry
        pace, a converged one's every status_seconds (reconcile.timer)."""
        return min(self.retry_seconds, self.status_seconds)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        d = cls()
        s = cls(
            node_image=env.get("CONSORTIUM_NODE_IMAGE", d.node_image),
            cluster_domain=env.get("CONSORTIUM_CLUSTER_DOMAIN", d.cluster_domain),
            node_address=env.get("CONSORTIUM_NODE_ADDRESS", d.node_address),
            retry_seconds=float(env.get("CONSORTIUM_RETRY_SECONDS", d.retry_seconds)),
            status_seconds=float(env.get("CONSORTIUM_STATUS_SECONDS", d.status_seconds)),
            max_lag=int(env.get("CONSORTIUM_MAX_LAG", d.max_lag)),
            rpc_timeout=float(env.get("CONSORTIUM_RPC_TIMEOUT", d.rpc_timeout)),
            proposal_ttl=int(env.get("CONSORTIUM_PROPOSAL_TTL", d.proposal_ttl)),
            reapply_seconds=float(env.get("CONSORTIUM_REAPPLY_SECONDS", d.reapply_seconds)),
            timer_passes=int(env.get("CONSORTIUM_TIMER_PASSES", d.timer_passes)),
            watched_wait_seconds=float(
                env.get("CONSORTIUM_WATCHED_WAIT_SECONDS", d.watched_wait_seconds)
            ),
        )
        if s.node_address not in ("pod-ip", "dns"):
            raise ValueError("CONSORTIUM_NODE_ADDRESS must be pod-ip or dns")
        if not 1 <= s.proposal_ttl <= 1_000_000:
            raise ValueError("CONSORTIUM_PROPOSAL_TTL must be 1..1000000 blocks")
        if not 1 <= s.timer_passes <= 1000:
            raise ValueError("CONSORTIUM_TIMER_PASSES must be 1..1000")
        if not 1 <= s.watched_wait_seconds <= 3600:
            raise ValueError("CONSORTIUM_WATCHED_WAIT_SECONDS must be 1..3600")
        if not 0 <= s.reapply_seconds <= 86_400:
            raise ValueError("CONSORTIUM_REAPPLY_SECONDS must be 0..86400")
        return s
