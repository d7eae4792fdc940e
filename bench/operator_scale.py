"""Operator figures.

* `measure_control_plane`: the operator (`consortium-operator --standalone`, a real process)
  against a real kube-apiserver + etcd on 127.0.0.1 (the harness the operator's integration
  tier uses, tests/support/apiserver.py). No kubelet runs, so no pod
  ever starts: what is measured is the operator's own work for N Consortium objects — time
  until every one has its StatefulSets, its memory (RSS, peak RSS) and CPU, and the time
  for a spec change (a new node image on all N) to reach every StatefulSet template.
* `measure_cluster`: apply → Ready of a 4-validator consortium on the real test cluster
  (`make cluster-kubeconfig`), with the operator already installed there."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.apiserver import ControlPlane, find_binaries
from tests.support.kube import Kubectl, KubectlError
from tests.support.kube import kubectl_binary as find_kubectl
from tests.support.wait import WaitTimeout, wait_for

from .procs import Procs, cpu_seconds, rss_mib

ROOT = Path(__file__).resolve().parents[1]
CRD_NAME = "crd/consortia.consortium.dev"
WARMUP = "warmup"  # the consortium that shows the operator is watching (not measured)
APPLY_CLIENTS = 4  # kubectl processes applying the N objects at once (apply_all)
CRD_FILE = ROOT / "charts" / "consortium-crds" / "templates" / "consortium.dev_consortia.yaml"


class Skipped(RuntimeError):
    """Not measured; the message (the reason) goes into the JSON."""


def kubectl_binary() -> str:
    found = find_kubectl()
    if not found:
        raise Skipped("kubectl not found (make cluster-tools)")
    return found


def consortium_doc(name: str, image: str, validators: tuple[int, int] = (2, 2)) -> dict[str, Any]:
    return {
        "apiVersion": "consortium.dev/v1alpha1",
        "kind": "Consortium",
        "metadata": {"name": name},
        "spec": {
            "chainId": f"{name}-chain",
            "image": image,
            "organizations": [
                {"name": "acme", "validators": validators[0]},
                {"name": "beta", "validators": validators[1]},
            ],
        },
    }


def _poll(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `check()` holds (polled every 0.5 s); WaitTimeout after `timeout`."""
    t0 = time.monotonic()
    wait_for(check, timeout, what, 0.5)
    return time.monotonic() - t0


class ImageWatch:
    """The measured StatefulSets' container images as one `kubectl get --watch` streams
    them (a line per object, then per change; read in a thread), so `wait` returns when
    every one has an image without the harness re-LISTing all of them: polling `kubectl get
    statefulsets` every 0.5 s cost a process and a LIST of 200 whole StatefulSets each time,
    on the 2 cores the apiserver and the operator share. Registered with `procs` (killed on
    exit)."""

    def __init__(self, k: Kubectl, ns: str, skip_prefix: str, procs: Procs) -> None:
        template = '{.metadata.name} {.spec.template.spec.containers[0].image}{"\\n"}'
        self.proc = subprocess.Popen(
            k.argv("get", "statefulsets", "-n", ns, "--watch", "-o", f"jsonpath={template}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        procs.procs.append(self.proc)
        self.skip_prefix = skip_prefix
        self.images: dict[str, str] = {}
        self.ended = False
        self._changed = threading.Condition()
        threading.Thread(target=self._read, name="sts watch", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            name, _, image = raw.decode().strip().partition(" ")
            if name and not name.startswith(self.skip_prefix):
                with self._changed:
                    self.images[name] = image
                    self._changed.notify_all()
        with self._changed:
            self.ended = True
            self._changed.notify_all()

    def wait(self, image: str, count: int, timeout: float, what: str) -> None:
        """Until `count` StatefulSets all have `image`; WaitTimeout after `timeout`."""

        def done() -> bool:
            if self.ended:
                raise RuntimeError(f"kubectl get --watch ended ({self.proc.poll()}) before {what}")
            imgs = self.images
            return len(imgs) >= count and all(v == image for v in imgs.values())

        with self._changed:
            if not self._changed.wait_for(done, timeout):
                raise WaitTimeout(f"{what}: not within {timeout:.0f} s")


def measure_control_plane(
    directory: Path,
    procs: Procs,
    count: int = 100,
    timeout: float = 300.0,
    steady_s: int = 20,
) -> dict[str, Any]:
    """See the module docstring. Raises Skipped when kube-apiserver/etcd/kubectl are missing."""
    found = find_binaries()
    if isinstance(found, str):
        raise Skipped(found)
    kubectl_bin = kubectl_binary()
    cp = ControlPlane(found, directory / "kube")
    started: list[subprocess.Popen[bytes]] = []
    try:
        t0 = time.monotonic()
        try:
            cp.start()
        except RuntimeError as e:
            raise Skipped(f"control plane did not start: {str(e)[:300]}") from None
        cp_start_s = time.monotonic() - t0
        k = Kubectl(kubectl_bin, cp.kubeconfig)
        k.run("apply", "--server-side", "-f", str(CRD_FILE))
        # `kubectl wait` fails at once (instead of waiting) when it reads the CRD before the
        # apiserver wrote any status condition
        established = ("wait", "--for=condition=Established", "--timeout=60s", CRD_NAME)
        _poll(lambda: _ok(k, *established), 60, "the Consortium CRD Established")
        _poll(lambda: _ok(k, "get", "consortia", "-A"), 30, "consortia servable")
        ns = f"bench-{uuid.uuid4().hex[:6]}"
        k.run("create", "namespace", ns)
        op = procs.spawn(
            [sys.executable, "-m", "consortium_operator", "--standalone", "-n", ns],
            directory / "operator.log",
            env={"KUBECONFIG": str(cp.kubeconfig), "CONSORTIUM_RPC_TIMEOUT": "0.5"},
        )
        started.append(op)

        sts = ImageWatch(k, ns, f"{WARMUP}-", procs)  # the measured consortia's StatefulSets

        def warmed_up() -> bool:
            if op.poll() is not None:
                raise RuntimeError(
                    f"operator exited with {op.returncode}; see {directory}/operator.log"
                )
            return k.get("statefulset", f"{WARMUP}-acme", ns) is not None

        # the operator lists and watches once it has reconciled one object: a warm-up
        # consortium (not counted below) instead of a fixed sleep before the burst
        k.apply(json.dumps(consortium_doc(WARMUP, "consortium/node:warmup")), ns)
        _poll(warmed_up, 60, "the operator's first reconcile")
        rss_idle = rss_mib(op.pid)

        names = [f"c{i:03d}" for i in range(count)]

        def apply_all(image: str) -> None:
            """All N objects as a user scripting a fleet would: server-side apply (one PATCH
            per object, no GET first) from APPLY_CLIENTS kubectl processes at once, each a
            List of its share. A single client-side `kubectl apply` of the List did a GET
            and a PATCH per object in turn, 15-20 s for 100 here: the bench measured kubectl."""
            shares = [names[i::APPLY_CLIENTS] for i in range(APPLY_CLIENTS)]
            running = []
            for share in shares:
                items = [consortium_doc(n, image) for n in share]
                doc = {"apiVersion": "v1", "kind": "List", "items": items}
                argv = k.argv(*("apply", "--server-side", "--force-conflicts", "-n", ns, "-f", "-"))
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                running.append((proc, json.dumps(doc)))
            for proc, text in running:
                out, err = proc.communicate(text, timeout=timeout)
                if proc.returncode != 0:
                    raise KubectlError(f"kubectl apply failed ({proc.returncode}):\n{out}{err}")

        c0 = cpu_seconds([op.pid])
        t0 = time.monotonic()
        apply_all("consortium/node:bench-a")
        apply_s = time.monotonic() - t0
        sts.wait("consortium/node:bench-a", 2 * count, timeout, "all StatefulSets created")
        create_s = time.monotonic() - t0
        c1 = cpu_seconds([op.pid])
        rss_after_create = rss_mib(op.pid)

        # steady state: N consortia whose pods never come up (the operator keeps retrying
        # and its status timer keeps running), sampled once a second for `steady_s`
        samples = [rss_mib(op.pid)]
        r0 = api_requests(k)
        s0, st0 = cpu_seconds([op.pid]), time.monotonic()
        for _ in range(steady_s):
            time.sleep(1.0)
            samples.append(rss_mib(op.pid))
        steady_wall = time.monotonic() - st0
        steady_cpu_pct = 100 * (cpu_seconds([op.pid]) - s0) / steady_wall
        steady_requests = _rates(r0, api_requests(k), steady_wall)

        c2 = cpu_seconds([op.pid])
        cp2 = cpu_seconds([p.pid for p in cp.procs])  # etcd + kube-apiserver
        r2 = api_requests(k)
        d2 = api_requests(k, DURATION_RE)
        t0 = time.monotonic()
        apply_all("consortium/node:bench-b")
        change_apply_s = time.monotonic() - t0  # the last object is changed only by then
        sts.wait("consortium/node:bench-b", 2 * count, timeout, "spec change reconciled")
        change_s = time.monotonic() - t0
        c3 = cpu_seconds([op.pid])
        cp3 = cpu_seconds([p.pid for p in cp.procs])
        change_requests = _rates(r2, api_requests(k), 1.0)
        change_seconds = _rates(d2, api_requests(k, DURATION_RE), 1.0)
        return {
            "how": (
                f"consortium-operator --standalone (one process) against kube-apiserver + etcd "
                f"on 127.0.0.1 (no kubelet: pods never run); {count} Consortium objects of 2x2 "
                f"validators applied by {APPLY_CLIENTS} `kubectl apply --server-side` of a List "
                f"each, at once; 'reconciled' = every "
                f"StatefulSet exists with the spec's image (as one `kubectl get --watch` shows "
                f"them), after one warm-up consortium showed the operator watching; the spec "
                f"change is a new spec.image on all {count}; memory = operator VmRSS/VmHWM; steady CPU % "
                f"over {steady_s} s between the two"
            ),
            "consortia": count,
            "control_plane_start_s": round(cp_start_s, 2),
            "create_all_reconciled_s": round(create_s, 2),
            "kubectl_apply_s": round(apply_s, 2),
            "create_cpu_s": round(c1 - c0, 2),
            "spec_change_all_reconciled_s": round(change_s, 2),
            # of which the `kubectl apply`s of the changed objects (apply_all): no operator
            # reconciles the last object before it is changed
            "spec_change_kubectl_apply_s": round(change_apply_s, 2),
            "spec_change_cpu_s": round(c3 - c2, 2),
            "spec_change_control_plane_cpu_s": round(cp3 - cp2, 2),
            "steady_cpu_percent": round(steady_cpu_pct, 1),
            # apiserver requests (all clients: the operator and this harness's polling), by
            # verb and resource: per second in the steady state, in all during the change
            "steady_requests_per_s": steady_requests,
            "spec_change_requests": change_requests,
            # and the seconds the apiserver spent answering them (request latency summed)
            "spec_change_request_seconds": change_seconds,
            "rss_mib_idle": round(rss_idle, 1),
            "rss_mib_after_create": round(rss_after_create, 1),
            "rss_mib_steady_max": round(max(samples), 1),
            "rss_mib_after_change": round(rss_mib(op.pid), 1),
            "peak_rss_mib": round(rss_mib(op.pid, peak=True), 1),
        }
    finally:
        procs.stop(started)
        cp.stop()


REQUEST_RE = re.compile(r"^apiserver_request_total\{([^}]*)\} (\S+)$", re.M)
DURATION_RE = re.compile(r"^apiserver_request_duration_seconds_sum\{([^}]*)\} (\S+)$", re.M)


def api_requests(k: Kubectl, metric: re.Pattern[str] = REQUEST_RE) -> dict[str, float]:
    """kube-apiserver's request counters (or another of its per-request metrics) by
    "VERB resource" (its /metrics). WATCH requests are left out: a watch lasts minutes, so
    its duration is no request's cost, and one ending in the window would dwarf the rest."""
    out: dict[str, float] = {}
    for labels, value in metric.findall(k.run("get", "--raw", "/metrics").stdout):
        kv = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if kv.get("verb") == "WATCH":
            continue
        sub = f"/{kv['subresource']}" if kv.get("subresource") else ""
        key = f"{kv.get('verb', '?')} {kv.get('resource', '?')}{sub}"
        out[key] = out.get(key, 0.0) + float(value)
    return out


def _rates(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """The counters' growth per `seconds`, largest first, with their total; zero rows left out."""
    d = {key: (v - before.get(key, 0.0)) / seconds for key, v in after.items()}
    rows = sorted(((key, round(v, 1)) for key, v in d.items() if v > 0), key=lambda kv: -kv[1])
    return {"total": round(sum(v for _, v in rows), 1), **dict(rows)}


def _ok(k: Kubectl, *args: str) -> bool:
    return k.run(*args, check=False).returncode == 0


def cluster_kubeconfig() -> Path | None:
    """The test cluster's kubeconfig when `make cluster-kubeconfig` succeeds, else None."""
    try:
        p = subprocess.run(
            ["make", "--no-print-directory", "-s", "cluster-kubeconfig"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    path = (
        Path(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 and p.stdout.strip() else None
    )
    return path if path is not None and path.exists() else None


def measure_cluster(kubeconfig: Path, timeout: float = 120.0) -> dict[str, Any]:
    """apply → Ready of a 4-validator BFT consortium in a fresh namespace of the test cluster
    (Ready polled every 0.5 s, at most `timeout`), then deletes it (the consortium first, so
    the operator's finalizer runs, then the namespace). Needs the operator in the cluster."""
    k = Kubectl(kubectl_binary(), kubeconfig)
    try:
        k.run("get", "--raw", "/readyz", "--request-timeout=10s", timeout=30)
        deps = k.json(
            "get", "deployments", "-A", "-l", "app.kubernetes.io/name=consortium-operator"
        )
    except (KubectlError, subprocess.TimeoutExpired) as e:
        raise Skipped(
            f"no cluster: {kubeconfig} exists but the API server does not answer ({e})"
        ) from None
    if not deps.get("items"):
        raise Skipped("no consortium-operator Deployment in the cluster (helm install it first)")
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    k.run("create", "namespace", ns)
    out: dict[str, Any] = {
        "how": "kubectl apply of a 2x2-validator BFT Consortium in a fresh namespace, then its "
        "Ready condition polled every 0.5 s; wall time on the test cluster",
        "timeout_s": timeout,
    }
    last: dict[str, Any] = {}

    def ready() -> bool:
        nonlocal last
        try:
            obj = k.json("get", "consortium", "bench4", "-n", ns)
        except KubectlError:
            return False
        last = obj.get("status") or {}
        conds = {c.get("type"): c for c in last.get("conditions") or []}
        return bool(conds.get("Ready", {}).get("status") == "True")

    try:
        doc = consortium_doc("bench4", os.environ.get("NODE_IMAGE", "consortium/node:dev"))
        t0 = time.monotonic()
        k.run("apply", "-n", ns, "-f", "-", input=json.dumps(doc))
        try:
            _poll(ready, timeout, "Ready")
            out["apply_to_ready_s"] = round(time.monotonic() - t0, 2)
        except WaitTimeout:
            out["apply_to_ready_s"] = None
            out["not_ready"] = {
                "after_s": timeout,
                "conditions": [
                    {x: c.get(x) for x in ("type", "status", "reason", "message")}
                    for c in last.get("conditions") or []
                ],
            }
    finally:
        for argv in (
            ["delete", "consortium", "bench4", "-n", ns, "--timeout=60s"],
            ["delete", "namespace", ns, "--wait=false"],
        ):
            k.run(*argv, check=False, timeout=90)
    return out
