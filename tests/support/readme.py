"""README.md's command blocks as tests: parse the fenced ```sh blocks and their markers, run
them in order with bash.

Used by tests/unit/test_readme_blocks.py (the convention holds for every block),
tests/integration/test_readme_local.py (every `run: local` block, on a fresh scratch directory
and HOME), tests/e2e/test_readme_cluster.py (every `run: cluster` block on the kind cluster,
and the commands of the charts' rendered NOTES.txt), and the federation tier.

The convention (CONTRIBUTING.md repeats it): every fenced ```sh block of README.md is preceded,
on the line right before its opening fence, by exactly one marker comment:

    <!-- run: local -->        run in order on a fresh scratch directory and HOME (no cluster)
    <!-- run: cluster -->      run in order on the e2e kind cluster
    <!-- run: federation -->   run in order by the two-cluster tier
    <!-- illustrative -->      not run (keep these few)

A `run:` marker may carry ONE option after a comma:

    <!-- run: local, background until: TEXT -->
        the block keeps running in the background (e.g. `consortium up`, `kubectl
        port-forward`); the next block starts once TEXT appears in its output (bounded; the
        block exiting first, or the bound passing, fails the journey). It is stopped (SIGTERM
        to its process group, SIGKILL after a bound) when the journey ends.
    <!-- run: local, fails with: TEXT -->
        the block must exit non-zero with TEXT in its output (an error the README shows).
    <!-- run: local, after ctrl-c -->
        before the block runs, the latest background block still running gets SIGINT (what
        Ctrl-C in its terminal does) and must exit within a bound (the README says "stop it").
    <!-- run: cluster, cleanup -->
        run after every other block of the tier, also when one of them failed (undo what
        the journey created: a Consortium, a Helm release).

Blocks run as `bash -euo pipefail` scripts, one process (and process group) per block, in the
journey's working directory with its environment; a block that fails shows the block and its
output. Every block of a tier runs in the order of the file: a block may use what an earlier
one created (files, contexts, a running chain)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

TIERS = ("local", "cluster", "federation")
_FENCE = re.compile(r"^```(\S*)\s*$")
_COMMENT = re.compile(r"^<!--\s*(.*?)\s*-->\s*$")
_RUN = re.compile(r"^run:\s*([a-z]+)\s*(?:,\s*(.*))?$")
_OPTION = re.compile(r"^(background until|fails with):\s*(\S.*)$|^(cleanup|after ctrl-c)$")


class ReadmeError(AssertionError):
    """README breaks the convention, or a block failed (the text shows the block and output)."""


@dataclass(frozen=True)
class Block:
    """One fenced ```sh block: where it is, its marker, its text."""

    line: int  # 1-based line of the opening fence
    marker: str  # the marker comment's text, e.g. "run: local, background until: endpoints:"
    code: str
    tier: str | None  # None: illustrative
    background_until: str | None = None
    fails_with: str | None = None
    cleanup: bool = False
    after_ctrl_c: bool = False
    source: str = "README.md"

    def where(self) -> str:
        return f"{self.source}:{self.line} <!-- {self.marker} -->"


def parse_marker(text: str, line: int) -> dict[str, object]:
    """The fields a marker comment gives a Block; ReadmeError for an unknown marker."""
    if text == "illustrative":
        return {"tier": None}
    m = _RUN.match(text)
    if m is None or m.group(1) not in TIERS:
        raise ReadmeError(
            f"README.md:{line}: unknown marker <!-- {text} --> (want run: local|cluster|"
            "federation [, background until: TEXT | fails with: TEXT | after ctrl-c | "
            "cleanup] or "
            "illustrative)"
        )
    fields: dict[str, object] = {"tier": m.group(1)}
    if m.group(2) is not None:
        opt = _OPTION.match(m.group(2).strip())
        if opt is None:
            raise ReadmeError(f"README.md:{line}: unknown marker option in <!-- {text} -->")
        if opt.group(1) == "background until":
            fields["background_until"] = opt.group(2).strip()
        elif opt.group(1) == "fails with":
            fields["fails_with"] = opt.group(2).strip()
        elif opt.group(3) == "cleanup":
            fields["cleanup"] = True
        else:
            fields["after_ctrl_c"] = True
    return fields


def parse(text: str) -> list[Block]:
    """Every fenced ```sh block with its marker, in order. ReadmeError if a sh block has no
    marker on the line before, or an unknown one, or a fence is left open."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        start = i
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise ReadmeError(f"README.md:{start + 1}: a fence that never closes")
        i = end + 1
        if m.group(1) not in ("sh", "bash", "shell", "console"):
            continue
        if m.group(1) != "sh":
            raise ReadmeError(f"README.md:{start + 1}: write shell blocks as ```sh")
        prev = _COMMENT.match(lines[start - 1]) if start > 0 else None
        if prev is None:
            raise ReadmeError(
                f"README.md:{start + 1}: a ```sh block without a marker on the line before "
                "(<!-- run: local|cluster|federation --> or <!-- illustrative -->)"
            )
        fields = parse_marker(prev.group(1), start)
        code = "\n".join(lines[start + 1 : end]) + "\n"
        blocks.append(Block(line=start + 1, marker=prev.group(1), code=code, **fields))  # type: ignore[arg-type]
    return blocks


def blocks(tier: str, path: Path = README) -> list[Block]:
    """The blocks of `tier` in the order they run: the file's order, cleanup blocks last."""
    every = [b for b in parse(path.read_text()) if b.tier == tier]
    return [b for b in every if not b.cleanup] + [b for b in every if b.cleanup]


def section(text: str, title: str) -> str:
    """The text of the `## title` section (up to the next `## ` heading)."""
    m = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    if m is None:
        raise ReadmeError(f"README.md has no '## {title}' section")
    return m.group(1)


_NOTES_COMMAND = re.compile(r"^\s{2,}((?:kubectl|helm|consortium)\s.*?)\s*$")


def notes_blocks(text: str, source: str, replace: Mapping[str, str] | None = None) -> list[Block]:
    """The commands of a chart's rendered NOTES.txt (`helm get notes`) as cluster blocks, one
    per indented `kubectl|helm|consortium` line, in order; `replace` fills placeholders such
    as `<org>`. A line ending in `&` is a `kubectl port-forward`, run in the background until
    it shows "Forwarding from"."""
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        m = _NOTES_COMMAND.match(line)
        if m is None:
            continue
        code = m.group(1)
        for old, new in (replace or {}).items():
            code = code.replace(old, new)
        until = None
        if code.endswith("&"):
            if "port-forward" not in code:
                raise ReadmeError(f"{source}:{n}: only kubectl port-forward runs in the background")
            code, until = code[:-1].rstrip(), "Forwarding from"
        if "<" in code:
            raise ReadmeError(f"{source}:{n}: a placeholder left in {code!r}")
        found.append(
            Block(
                line=n,
                marker="notes",
                code=code + "\n",
                tier="cluster",
                background_until=until,
                source=source,
            )
        )
    return found


# --------------------------------------------------------------------------- running


def _tail(path: Path, limit: int = 6000) -> str:
    data = path.read_bytes() if path.exists() else b""
    text = data.decode(errors="replace")
    return text if len(text) <= limit else "...\n" + text[-limit:]


@dataclass
class Background:
    """A block left running: its process group and output file."""

    block: Block
    proc: subprocess.Popen[bytes]
    out: Path


@dataclass
class Journey:
    """Runs blocks in order in `cwd` with `env`; background blocks are stopped by `close()`
    (use it as a context manager). `log` collects every block's output for a failure report."""

    cwd: Path
    env: Mapping[str, str]
    timeout: float = 300.0
    background: list[Background] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    _scratch: Path | None = None

    def __enter__(self) -> Journey:
        self._scratch = Path(tempfile.mkdtemp(prefix="readme-out-"))
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _outfile(self, block: Block) -> Path:
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="readme-out-"))
        return self._scratch / f"block-{block.line}.out"

    def _start(self, block: Block, out: Path) -> subprocess.Popen[bytes]:
        # output goes to a file, not a pipe: a command the block leaves running in the
        # background would hold a pipe open and hang the reader
        with out.open("wb") as f:
            return subprocess.Popen(
                ["bash", "-euo", "pipefail", "-c", block.code],
                cwd=self.cwd,
                env=dict(self.env),
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as one
                preexec_fn=_ctrl_c_works,
            )

    def _failure(self, block: Block, why: str, out: Path) -> ReadmeError:
        return ReadmeError(
            f"{block.where()}: {why}\n--- block ---\n{block.code}--- output ---\n{_tail(out)}"
        )

    def run(self, block: Block, timeout: float | None = None) -> str:
        """Runs one block; its output. ReadmeError (block + output) when it fails, when a
        `fails with` block succeeds or fails otherwise, on timeout, or when a background
        block exits or does not show its TEXT in time."""
        bound = self.timeout if timeout is None else timeout
        if block.after_ctrl_c:
            self.interrupt_latest(block, bound)
        out = self._outfile(block)
        t0 = time.monotonic()
        proc = self._start(block, out)
        deadline = t0 + bound
        if block.background_until is not None:
            self.background.append(Background(block, proc, out))
            while block.background_until not in _tail(out, 1_000_000):
                if proc.poll() is not None:
                    raise self._failure(
                        block,
                        f"exited ({proc.returncode}) before showing {block.background_until!r}",
                        out,
                    )
                if time.monotonic() >= deadline:
                    raise self._failure(
                        block, f"did not show {block.background_until!r} within {bound:g}s", out
                    )
                time.sleep(0.1)  # polling the output file for the text, bounded above
            took = time.monotonic() - t0
            self.log.append(
                f"{block.where()} running in the background after {took:.1f}s\n{_tail(out)}"
            )
            return out.read_text(errors="replace")
        try:
            rc = proc.wait(timeout=bound)
        except subprocess.TimeoutExpired:
            _stop(proc)
            raise self._failure(block, f"timed out after {bound:g}s", out) from None
        # a command the block put in the background (`&`) without the marker is stopped here
        _stop(proc)
        text = out.read_text(errors="replace")
        self.log.append(f"{block.where()} exit {rc} in {time.monotonic() - t0:.1f}s\n{_tail(out)}")
        if block.fails_with is not None:
            if rc == 0:
                raise self._failure(block, "succeeded, but the README says it fails", out)
            if block.fails_with not in text:
                raise self._failure(
                    block, f"failed ({rc}) without {block.fails_with!r} in its output", out
                )
            return text
        if rc != 0:
            raise self._failure(block, f"exit {rc}", out)
        return text

    def run_all(self, todo: list[Block], timeout: float | None = None) -> list[str]:
        """Runs `todo` in order (their outputs), then the cleanup blocks even when one of
        the others failed; the first failure is raised after the cleanups ran."""
        main = [b for b in todo if not b.cleanup]
        cleanups = [b for b in todo if b.cleanup]
        outputs: list[str] = []
        failed: ReadmeError | None = None
        try:
            for b in main:
                outputs.append(self.run(b, timeout))
        except ReadmeError as e:
            failed = e
        finally:
            self.stop_background()
            errors = [str(failed)] if failed is not None else []
            for b in cleanups:
                try:
                    self.run(b, timeout)
                except ReadmeError as e:
                    errors.append(f"(cleanup) {e}")
        if errors:
            raise ReadmeError("\n\n".join(errors))
        return outputs

    def interrupt_latest(self, block: Block, bound: float) -> None:
        """Ctrl-C for the latest background block still running: SIGINT to its group, then
        its exit within `bound` (ReadmeError otherwise, or when none runs)."""
        running = [b for b in self.background if b.proc.poll() is None]
        if not running:
            raise ReadmeError(f"{block.where()}: no background block runs to stop")
        bg = running[-1]
        os.killpg(bg.proc.pid, signal.SIGINT)
        try:
            bg.proc.wait(timeout=bound)
        except subprocess.TimeoutExpired:
            _stop(bg.proc)
            why = f"did not stop within {bound:g}s of Ctrl-C"
            raise self._failure(bg.block, why, bg.out) from None
        finally:
            self.background.remove(bg)
        _stop(bg.proc)  # anything the block left behind in its group
        self.log.append(f"{bg.block.where()} stopped by Ctrl-C\n{_tail(bg.out)}")

    def stop_background(self) -> None:
        while self.background:
            _stop(self.background.pop().proc)

    def close(self) -> None:
        """Stops what runs in the background and removes the blocks' output files."""
        self.stop_background()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


def _stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM to the block's process group, SIGKILL to what is left of it after `grace`
    seconds; the block's own process is reaped (bounded throughout)."""
    for sig, bound in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if not _group_alive(proc):
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + bound
        while _group_alive(proc) and time.monotonic() < deadline:
            time.sleep(0.05)  # bounded poll until the group's last process is gone
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5.0)


def _group_alive(proc: subprocess.Popen[bytes]) -> bool:
    proc.poll()  # reap the leader: a zombie would count as alive
    try:
        os.killpg(proc.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _ctrl_c_works() -> None:
    """In the block's process before exec: SIGINT delivered and at its default, as in a
    terminal. Inherited otherwise — a non-interactive shell cannot trap a signal ignored on
    entry, and a blocked one never arrives: a fresh-clone CI run (where the test process had
    SIGINT ignored or blocked; both reproduce it) saw "did not stop within 20s of Ctrl-C"."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)
