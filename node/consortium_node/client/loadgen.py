"""The load generator behind `consortium bench` (and `bench/`): that measures committed tx/s and commit latency.

How it measures:
1. GetStatus for the chain id and the current height H0; K fresh sender keys, their next
   nonces (QueryState nonce_of). On a permissioned chain the fresh keys must be vouched for:
   given an admin key (`--data-dir` supplies the local consortium's), one AddMember tx per key
   is committed first (not measured).
2. N key/value puts are built and signed IN ADVANCE (signing is not measured). Tx i is sent by
   key i % K; key k always goes over stream k % M, so each sender's nonces arrive in order.
3. M SubmitStream bidi streams (each on its own HTTP/2 connection), spread over P worker
   processes (`--procs`; threads inside one process when P = 1), send as fast as the node takes
   them (or at `--rate` tx/s in total). A tx's send time is taken when it is handed to gRPC.
4. A follower reads StreamBlocks(from H0+1, follow, ids_only) and stamps each tx id with the
   time its block arrives. Commit latency = that stamp - send time (CLOCK_MONOTONIC, shared
   by all processes of the machine).
5. tx/s = committed txs / (last commit - first send). Rejected = TxResult code != OK.

`run_bench(BenchConfig)` is the entry point: `consortium_node.cli.bench` (a thin typer
command that prints the report) and `bench/ours.py` call it. `BenchReport.to_json()` is the
JSON object `consortium bench --json` prints."""

from __future__ import annotations

import hashlib
import math
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from consortium_api.v1 import types_pb2

from .discovery import ClientTLS, DataDir
from .errors import ClientError, status_name
from .keys import Signer
from .rpc import DEFAULT_TIMEOUT, Client
from .tx import tx_id_of


@dataclass(frozen=True, slots=True)
class BenchConfig:
    endpoint: str
    txs: int = 10_000
    streams: int = 4
    keys: int = 0  # 0: one key per stream
    size: int = 100  # bytes of each put's value
    procs: int = 1
    rate: float = 0.0  # total tx/s; 0 = as fast as possible
    batch: int = 0  # 0: SubmitStream, one message per tx; N: SubmitBatch RPCs of N txs
    commit_timeout: float = 30.0  # give up when no new commit for this long after sending
    # where the streams submit (stream s -> submit_to[s % len]); empty: `endpoint`. Commits
    # are always followed on `endpoint`.
    submit_to: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    tls: ClientTLS | None = None
    # an admin key file: vouch for the fresh sender keys (AddMember) before sending
    admin_key: Path | None = None
    member_org: str = ""
    # "contract/method": each tx is that Invoke (input: a 32-byte recipient | u64 LE amount
    # 1, a token transfer's shape) instead of a kv put; `size` is then unused
    invoke: str = ""
    invoke_fuel: int = 1_000_000


@dataclass(slots=True)
class BenchReport:
    endpoint: str
    txs: int
    streams: int
    keys: int
    procs: int
    size: int
    rate: float
    batch: int = 0
    submit_to: tuple[str, ...] = ()
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    committed: int = 0
    uncommitted: int = 0
    duration_s: float = 0.0
    send_s: float = 0.0
    tx_per_s: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    rejections: dict[str, int] = field(default_factory=dict)
    start_height: int = 0
    end_height: int = 0
    blocks: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "submit_to": list(self.submit_to or (self.endpoint,)),
            "txs": self.txs,
            "streams": self.streams,
            "keys": self.keys,
            "procs": self.procs,
            "size": self.size,
            "rate": self.rate,
            "api": f"SubmitBatch x{self.batch}" if self.batch else "SubmitStream",
            "sent": self.sent,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "committed": self.committed,
            "uncommitted": self.uncommitted,
            "duration_s": round(self.duration_s, 4),
            "send_s": round(self.send_s, 4),
            "tx_per_s": round(self.tx_per_s, 1),
            "latency_ms": {k: round(v, 2) for k, v in self.latency_ms.items()},
            "rejections": self.rejections,
            "start_height": self.start_height,
            "end_height": self.end_height,
            "blocks": self.blocks,
        }


# --------------------------------------------------------------------------- workers

# (tx index, sender seed slot, nonce)
_Plan = list[tuple[int, int, int]]
# (tx index, tx id, send time ns, result code, result message)
_Outcome = tuple[int, bytes, int, int, str]


class _QueueLike(Protocol):
    def put(self, obj: Any) -> None: ...


class _EventLike(Protocol):
    def wait(self, timeout: float | None = None) -> bool: ...


# (tx index, tx id, SignedTx wire bytes), in send order
_Signed = list[tuple[int, bytes, bytes]]


@dataclass(frozen=True, slots=True)
class _Job:
    """What one worker (a thread, or a spawned process: so it pickles) sends: stream k goes
    to `endpoints[k]` carrying `plans[k]`."""

    wid: int
    endpoints: list[str]
    chain_id: str
    tag: str
    size: int
    rate_per_stream: float
    batch: int
    seeds: list[bytes]
    plans: list[_Plan]
    tls: ClientTLS | None
    invoke: str = ""
    invoke_fuel: int = 0


def _sign(job: _Job) -> list[_Signed]:
    """Every tx of the job's plans, built and signed (not measured: done before `start`)."""
    signers = [Signer.from_seed(s) for s in job.seeds]
    value = os.urandom(job.size)
    signed: list[_Signed] = []
    for plan in job.plans:
        out = []
        for i, slot, nonce in plan:
            payload: types_pb2.KvPut | types_pb2.Invoke
            if job.invoke:
                contract, method = job.invoke.split("/", 1)
                to = hashlib.sha256(f"bench/{job.tag}/{i % 1024}".encode()).digest()
                payload = types_pb2.Invoke(
                    contract=contract,
                    method=method,
                    input=to + (1).to_bytes(8, "little"),
                    fuel_limit=job.invoke_fuel,
                )
            else:
                payload = types_pb2.KvPut(key=f"bench/{job.tag}/{i}".encode(), value=value)
            tx_id, tx = signers[slot].build_tx(job.chain_id, nonce, payload)
            out.append((i, tx_id, tx.SerializeToString()))
        signed.append(out)
    return signed


def _pace(rate: float, t0: float, j: int) -> None:
    """With a rate, holds tx `j` of a stream until its slot `t0 + j / rate`."""
    if rate > 0:
        delay = t0 + j / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class _Stream:
    """One stream's sending: per tx its send time, result code (-1: no answer) and message."""

    def __init__(self, job: _Job, txs: _Signed) -> None:
        self.job, self.txs = job, txs
        self.send_ns = [0] * len(txs)
        self.codes = [-1] * len(txs)
        self.msgs = [""] * len(txs)

    def _record(self, j: int, res: Any) -> None:
        self.codes[j] = res.code
        if res.code:
            self.msgs[j] = res.message

    def send_batches(self, client: Client) -> None:
        t0, batch = time.monotonic(), self.job.batch
        for j in range(0, len(self.txs), batch):
            _pace(self.job.rate_per_stream, t0, j)
            chunk = self.txs[j : j + batch]
            now = time.monotonic_ns()
            self.send_ns[j : j + len(chunk)] = [now] * len(chunk)
            for m, res in enumerate(client.submit_raw([t[2] for t in chunk]), j):
                self._record(m, res)

    def send_stream(self, client: Client) -> None:
        def gen() -> Iterator[bytes]:
            t0 = time.monotonic()
            for j, (_, _, raw) in enumerate(self.txs):
                _pace(self.job.rate_per_stream, t0, j)
                self.send_ns[j] = time.monotonic_ns()
                yield raw

        for j, res in enumerate(client.submit_stream_raw(gen())):
            if j >= len(self.txs):
                break
            self._record(j, res)

    def run(self, endpoint: str) -> tuple[list[_Outcome], str]:
        """Sends every tx; the outcomes (a tx without an answer counts as UNAVAILABLE) and
        the stream's error ('' when none)."""
        client = Client(endpoint, options=[("grpc.use_local_subchannel_pool", 1)], tls=self.job.tls)
        err = ""
        try:
            if self.job.batch:
                self.send_batches(client)
            else:
                self.send_stream(client)
        except ClientError as e:
            err = str(e)
        finally:
            client.close()
        outcomes = []
        for j, (i, tx_id, _) in enumerate(self.txs):
            code, msg = self.codes[j], self.msgs[j]
            if code < 0:  # no answer: stream broke
                code, msg = 14, err or "no result from the node"
            outcomes.append((i, tx_id, self.send_ns[j], code, msg))
        return outcomes, err


def _worker(job: _Job, ready: _QueueLike, start: _EventLike, results: _QueueLike) -> None:
    """Sign this worker's txs, report ready, wait for `start`, send each plan over its own
    stream, then put `(wid, outcomes, error)` on `results`. Runs in a thread or a process."""
    try:
        signed = _sign(job)
    except Exception as e:
        ready.put((job.wid, f"{type(e).__name__}: {e}"))
        return
    ready.put((job.wid, None))
    start.wait()

    outcomes: list[_Outcome] = []
    errors: list[str] = []
    lock = threading.Lock()

    def run_stream(endpoint: str, txs: _Signed) -> None:
        outs, err = _Stream(job, txs).run(endpoint)
        with lock:
            if err:
                errors.append(err)
            outcomes.extend(outs)

    threads = [
        threading.Thread(target=run_stream, args=(ep, s), daemon=True)
        for ep, s in zip(job.endpoints, signed, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put((job.wid, outcomes, "; ".join(errors)))


def _proc_entry(job: _Job, ready: _QueueLike, start: _EventLike, results: _QueueLike) -> None:
    # Ctrl-C goes to the whole process group; the parent handles it and terminates us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker(job, ready, start, results)


# --------------------------------------------------------------------------- driver


class _Follower:
    """Stamps every tx id seen in committed blocks (from `from_height`) with its arrival time."""

    def __init__(self, endpoint: str, from_height: int, tls: ClientTLS | None = None) -> None:
        self.client = Client(endpoint, tls=tls)
        self.from_height = from_height
        self.committed: dict[bytes, int] = {}
        self.blocks = 0
        self.last_height = from_height - 1
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            for b in self.client.stream_blocks(self.from_height, follow=True, ids_only=True):
                now = time.monotonic_ns()
                ids = list(b.tx_ids)
                if not ids and b.txs:
                    ids = [tx_id_of(types_pb2.SignedTx.FromString(t).body) for t in b.txs]
                for i in ids:
                    self.committed.setdefault(i, now)
                self.blocks += 1
                self.last_height = b.header_view.height
        except ClientError as e:
            self.error = str(e)
        except ValueError:  # channel closed under us while stopping
            pass

    def stop(self) -> None:
        self.client.close()
        self._thread.join(timeout=5)


def _drift(
    accepted: dict[bytes, int], committed: dict[bytes, int], first: int, last: int
) -> dict[str, float]:
    """p50 latency (ms) of the txs sent in the first and in the last quarter of the send span:
    equal within noise while the nodes keep up with a paced load, the last far above the
    first when a backlog grows over the run (the offered rate is above what they sustain)."""
    span = last - first
    if span <= 0:
        return {}
    early, late = [], []
    for i, s in accepted.items():
        if i not in committed:
            continue
        if s <= first + span // 4:
            early.append((committed[i] - s) / 1e6)
        elif s >= last - span // 4:
            late.append((committed[i] - s) / 1e6)
    if not early or not late:
        return {}
    return {
        "p50_first_quarter": _percentile(sorted(early), 0.50),
        "p50_last_quarter": _percentile(sorted(late), 0.50),
    }


def _percentile(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return 0.0
    k = max(0, min(len(sorted_vals) - 1, math.ceil(q * len(sorted_vals)) - 1))
    return sorted_vals[k]


def run_bench(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> BenchReport:
    """Run one benchmark against `cfg.endpoint` and return its report."""
    say = progress or (lambda _m: None)
    k = cfg.keys or cfg.streams
    if cfg.txs < 1 or cfg.streams < 1 or cfg.size < 0:
        raise ValueError("--txs and --streams must be >= 1 and --size >= 0")
    if k < cfg.streams:
        raise ValueError(f"--keys ({k}) must be >= --streams ({cfg.streams})")
    procs = max(1, min(cfg.procs, cfg.streams))
    report = BenchReport(
        cfg.endpoint, cfg.txs, cfg.streams, k, procs, cfg.size, cfg.rate, cfg.batch, cfg.submit_to
    )
    targets = cfg.submit_to or (cfg.endpoint,)
    stream_ep = [targets[s % len(targets)] for s in range(cfg.streams)]

    with Client(cfg.endpoint, cfg.timeout, tls=cfg.tls) as c:
        st = c.status()
        signers = [Signer.generate() for _ in range(k)]
        if cfg.admin_key is not None:
            say(f"vouching for {k} sender keys (AddMember)")
            _vouch(c, st.chain_id, Signer.load(cfg.admin_key), signers, cfg.member_org)
        base = [c.next_nonce(s.public_key) for s in signers]
    chain_id, h0 = st.chain_id, int(st.height)
    report.start_height = h0
    tag = os.urandom(4).hex()

    # stream s carries keys k' with k' % M == s; worker w carries streams s with s % P == w
    plans: list[_Plan] = [[] for _ in range(cfg.streams)]
    for i in range(cfg.txs):
        key = i % k
        plans[key % cfg.streams].append((i, key, base[key] + i // k))
    seeds = [s.seed for s in signers]
    rate_per_stream = cfg.rate / cfg.streams if cfg.rate > 0 else 0.0

    follower = _Follower(cfg.endpoint, h0 + 1, cfg.tls)
    follower.start()

    def job(wid: int, endpoints: list[str], mine: list[_Plan]) -> _Job:
        return _Job(
            wid,
            endpoints,
            chain_id,
            tag,
            cfg.size,
            rate_per_stream,
            cfg.batch,
            seeds,
            mine,
            cfg.tls,
            cfg.invoke,
            cfg.invoke_fuel,
        )

    say(f"signing {cfg.txs} txs from {k} keys in {procs} worker(s)")
    # worker w carries streams w, w + P, w + 2P, ...
    jobs = [job(w, stream_ep[w::procs], plans[w::procs]) for w in range(procs)]
    workers, ready, start, results = _workers(jobs)
    for w in workers:
        w.start()
    try:
        return _drive(cfg, report, follower, workers, ready, start, results, say)
    finally:
        follower.stop()
        for w in workers:
            if isinstance(w, mp.process.BaseProcess) and w.is_alive():
                w.terminate()


def _workers(jobs: list[_Job]) -> tuple[list[Any], Any, Any, Any]:
    """`(workers, ready, start, results)`, not started: one thread for a single job (no
    process start-up cost), else one spawned process per job, with queues and the start
    event of the matching kind."""
    if len(jobs) == 1:
        ready, results, start = queue.Queue[Any](), queue.Queue[Any](), threading.Event()
        thread = threading.Thread(target=_worker, args=(jobs[0], ready, start, results))
        thread.daemon = True
        return [thread], ready, start, results
    ctx = mp.get_context("spawn")
    mready, mresults, mstart = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_proc_entry, args=(j, mready, mstart, mresults), daemon=True)
        for j in jobs
    ]
    return list(procs), mready, mstart, mresults


def _vouch(c: Client, chain_id: str, admin: Signer, signers: list[Signer], org: str) -> None:
    """Commits one AddMember per key, from `admin` (a permissioned chain's governance key)."""
    nonce = c.next_nonce(admin.public_key)
    txs = [
        admin.build_tx(chain_id, nonce + i, types_pb2.AddMember(key=s.public_key, organization=org))
        for i, s in enumerate(signers)
    ]
    for res in c.submit([t for _, t in txs]):
        if res.code:
            raise ClientError(f"vouching for bench keys failed: {res.message}")
    got = c.wait_tx(txs[-1][0], timeout=30)
    if got.receipt.code:
        raise ClientError(f"vouching for bench keys failed: {got.receipt.message}")


def _get(q: Any, workers: list[Any], what: str) -> Any:
    while True:
        try:
            return q.get(timeout=0.5)
        except queue.Empty:
            if not any(w.is_alive() for w in workers):
                raise ClientError(f"bench workers exited while {what}") from None


def _drive(
    cfg: BenchConfig,
    report: BenchReport,
    follower: _Follower,
    workers: list[Any],
    ready: Any,
    start: Any,
    results: Any,
    say: Callable[[str], None],
) -> BenchReport:
    for _ in workers:
        _wid, err = _get(ready, workers, "signing")
        if err:
            raise ClientError(f"bench worker failed while signing: {err}")
    say(f"sending over {cfg.streams} stream(s)")
    start.set()

    outcomes: list[_Outcome] = []
    stream_errors: list[str] = []
    for _ in workers:
        _wid, outs, err = _get(results, workers, "sending")
        outcomes.extend(outs)
        if err:
            stream_errors.append(err)
    sent_done = time.monotonic_ns()
    if stream_errors and not any(o[3] == 0 for o in outcomes):
        raise ClientError(stream_errors[0])

    accepted = {o[1]: o[2] for o in outcomes if o[3] == 0}
    rejections: Counter[str] = Counter(
        f"{status_name(o[3])}: {o[4]}" for o in outcomes if o[3] != 0
    )
    say(f"{len(accepted)} accepted, {sum(rejections.values())} rejected; waiting for commits")

    remaining = set(accepted)
    last_progress = time.monotonic()
    while remaining:
        done = {i for i in remaining if i in follower.committed}
        if done:
            remaining -= done
            last_progress = time.monotonic()
        elif follower.error is not None or time.monotonic() - last_progress > cfg.commit_timeout:
            break
        time.sleep(0.02)

    send_times = [o[2] for o in outcomes if o[2]]
    first_send = min(send_times) if send_times else sent_done
    last_send = max(send_times) if send_times else sent_done
    lat = sorted(
        (follower.committed[i] - s) / 1e6 for i, s in accepted.items() if i in follower.committed
    )
    commits = [follower.committed[i] for i in accepted if i in follower.committed]
    last_commit = max(commits) if commits else sent_done
    report.sent = len(outcomes)
    report.accepted = len(accepted)
    report.rejected = sum(rejections.values())
    report.committed = len(lat)
    report.uncommitted = len(remaining)
    report.duration_s = max(1e-9, (last_commit - first_send) / 1e9)
    report.send_s = (last_send - first_send) / 1e9
    report.tx_per_s = report.committed / report.duration_s if report.committed else 0.0
    report.latency_ms = {
        "p50": _percentile(lat, 0.50),
        "p90": _percentile(lat, 0.90),
        "p99": _percentile(lat, 0.99),
        "max": lat[-1] if lat else 0.0,
        "mean": sum(lat) / len(lat) if lat else 0.0,
        **_drift(accepted, follower.committed, first_send, last_send),
    }
    report.rejections = dict(rejections.most_common(10))
    report.end_height = follower.last_height
    report.blocks = follower.blocks
    if follower.error is not None and remaining:
        say(f"block stream failed: {follower.error}")
    return report


def answering(dd: DataDir, timeout: float) -> list[str]:
    """Endpoints of the nodes of `dd` that answer GetStatus within `timeout` (max 2 s)."""
    up = []
    for n in dd.nodes:
        with Client(n.endpoint, timeout, tls=dd.tls) as c:
            try:
                c.status(timeout=min(timeout, 2.0))
            except ClientError:
                continue
        up.append(n.endpoint)
    return up
