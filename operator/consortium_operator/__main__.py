"""`consortium-operator`: run the operator (kopf) against the current kubeconfig or, in a
pod, the in-cluster service account.

  consortium-operator                       watch every namespace
  consortium-operator -n team-a -n team-b   watch only these namespaces
  consortium-operator --standalone          no kopf peering (single replica, local runs)
  consortium-operator --liveness http://0.0.0.0:8080/healthz
  consortium-operator --metrics-port 9090  Prometheus metrics (process, build info) on :9090

Settings come from CONSORTIUM_* environment variables (see settings.py)."""

from __future__ import annotations

import argparse
import ctypes
import importlib.metadata
import os
import random
import sys
from typing import Any

import kopf
from prometheus_client import Info, start_http_server

from .settings import Settings


@kopf.on.startup()
def _replica_settings(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Several replicas: a distinct peering priority each, so exactly one is active and the
    others stand by (equal priorities make kopf pause them all). Resource scanning is off:
    the operator names its one resource, so it needs no list/watch on CRDs and namespaces."""
    settings.peering.priority = random.randint(1, 2**31 - 1)
    settings.scanning.disabled = True


M_ARENA_MAX = -8  # glibc malloc.h: mallopt's parameter for the most arenas malloc creates
MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Caps glibc's malloc arenas for the rest of this process (True when it did; False when
    MALLOC_ARENA_MAX is set, which glibc already read, or the C library is not glibc). The
    operator's Kubernetes calls run in a pool of threads (kube.WORKERS, plus one per watch),
    and glibc gives threads arenas of their own, up to 8 per core: bench operator peak RSS
    142.8/146.8/147.0 MiB over 100 consortia on 2 cores with the default, 132.9/136.9/140.4
    MiB with 2 arenas (same runs, interleaved), at the same reconcile times; on a node with
    more cores the default allows more arenas still. Call before any thread starts."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this process runs on
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):
        return False  # not glibc (e.g. musl): its malloc has no per-thread arenas to cap
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_ARENA_MAX, arenas))


def main(argv: list[str] | None = None) -> None:
    limit_malloc_arenas()
    p = argparse.ArgumentParser(prog="consortium-operator", description=__doc__.splitlines()[0])
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeatable; default: all namespaces)",
    )
    p.add_argument("--standalone", action="store_true", help="run without kopf peering")
    p.add_argument("--peering", default=None, help="kopf peering object name")
    p.add_argument(
        "--liveness", default=None, help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz"
    )
    p.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics here")
    p.add_argument("--verbose", "-v", action="store_true", help="verbose logs")
    p.add_argument("--debug", action="store_true", help="debug logs")
    p.add_argument("--log-format", choices=["plain", "full", "json"], default="plain")
    args = p.parse_args(argv)
    try:
        Settings.from_env()  # fail fast on bad CONSORTIUM_* values
    except ValueError as e:
        print(f"consortium-operator: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    kopf.configure(
        verbose=args.verbose,
        debug=args.debug,
        log_format=kopf.LogFormat[args.log_format.upper()],
    )
    from . import handlers  # noqa: F401  (registers the handlers)

    if args.metrics_port is not None:
        try:
            version = importlib.metadata.version("consortium")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        Info("consortium_operator", "consortium operator build").info({"version": version})
        start_http_server(args.metrics_port)

    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=args.standalone or None,
        peering_name=args.peering,
        liveness_endpoint=args.liveness,
        # handlers.startup watches the operator's own objects in these (none: all)
        memo=kopf.Memo(namespaces=tuple(args.namespace)),
    )


if __name__ == "__main__":
    main()
