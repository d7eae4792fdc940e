"""Shared pieces of the `consortium` CLI: the connection/key options every client command
takes, endpoint and key resolution (`--endpoint`, `--data-dir`, `--node`, `--key`), and output
helpers (rich for humans, plain JSON for scripts, one-line errors on stderr).

Used by the command modules of `consortium_node.cli` only."""

from __future__ import annotations

import datetime as dt
import inspect
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer
from consortium_api.v1 import types_pb2
from rich.console import Console

from consortium_node.client.discovery import Context, DataDir
from consortium_node.client.errors import ClientError, status_name
from consortium_node.client.keys import Signer
from consortium_node.client.rpc import DEFAULT_TIMEOUT, Client, connect
from consortium_node.client.tx import parse_hex
from consortium_node.crypto import KeyFileError

# Not a terminal (pipes, CliRunner): a wide virtual width so hashes and tables never wrap.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)

DEFAULT_KEY_FILE = Path("~/.consortium/key.json")

# --------------------------------------------------------------------------- options

EndpointOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoint",
        "-e",
        help="Node address HOST:PORT (default: $CONSORTIUM_ENDPOINT or 127.0.0.1:7050).",
        show_default=False,
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        "-d",
        help="Directory of a local consortium ('consortium up'): endpoints and client key "
        "come from DIR/endpoints.json.",
        show_default=False,
    ),
]
NodeOpt = Annotated[
    str | None,
    typer.Option(
        "--node", help="With --data-dir: the node to talk to, by name.", show_default=False
    ),
]
TimeoutOpt = Annotated[
    float,
    typer.Option("--timeout", min=0.05, help="Deadline of each unary call, in seconds."),
]
KeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--key",
        "-k",
        help="Key file (default: the data dir's client key, $CONSORTIUM_KEY or "
        "~/.consortium/key.json).",
        show_default=False,
    ),
]
MinHeightOpt = Annotated[
    int,
    typer.Option(
        "--min-height",
        min=0,
        help="Answer as of this height or later: the node waits (within --timeout) until it "
        "has applied that block, e.g. the height `tx put --wait` printed, so a read through a "
        "Service that picks any node sees your write.",
    ),
]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]

__all__ = [
    "DEFAULT_TIMEOUT",
    "DataDirOpt",
    "EndpointOpt",
    "JsonOpt",
    "KeyOpt",
    "MinHeightOpt",
    "NodeOpt",
    "TimeoutOpt",
    "status_name",
]


# --------------------------------------------------------------------------- resolution


def open_client(
    endpoint: str | None, data_dir: Path | None, node: str | None, timeout: float
) -> Client:
    if node is not None and data_dir is None and not endpoint:
        raise typer.BadParameter("--node needs --data-dir", param_hint="--node")
    return connect(endpoint, data_dir=data_dir, node=node, timeout=timeout)


def default_key_path(data_dir: Path | None) -> Path:
    if data_dir is not None:
        dd = DataDir.load(data_dir)
        if dd.client_key is not None:
            return dd.client_key
    env = os.environ.get("CONSORTIUM_KEY")
    if env:
        return Path(env)
    ctx = Context.current()
    if ctx is not None and ctx.key is not None:
        return ctx.key
    return DEFAULT_KEY_FILE.expanduser()


def load_signer(key: Path | None, data_dir: Path | None) -> Signer:
    path = key if key is not None else default_key_path(data_dir)
    if key is None and not path.exists():
        raise KeyFileError(
            f"no key file given and {path} does not exist "
            "(pass --key FILE or create one with 'consortium keys new')",
            "missing",
        )
    return Signer.load(path)


def hex_arg(value: str, what: str, length: int | None = None) -> bytes:
    try:
        return parse_hex(value, what, length)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


# --------------------------------------------------------------------------- formatting


def tx_code_name(code: int) -> str:
    try:
        return types_pb2.TxCode.Name(code).removeprefix("TX_CODE_")  # type: ignore[arg-type]
    except ValueError:
        return f"CODE_{code}"


def fmt_time_ms(ms: int) -> str:
    if not ms:
        return "-"
    t = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).astimezone()
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{ms % 1000:03d}"


def show_bytes(b: bytes) -> str:
    """UTF-8 text when the bytes are printable text, else 0x-hex."""
    try:
        s = b.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + b.hex()
    return s if s.isprintable() else "0x" + b.hex()


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=None, sort_keys=False) + "\n")
    sys.stdout.flush()


def fail(message: str) -> ClientError:
    """An error to raise: the CLI prints `error: <message>` and exits 1."""
    return ClientError(message)


def _register(
    target: typer.Typer,
    name: str,
    doc_of: Callable[..., Any],
    own: list[inspect.Parameter],
    options: tuple[tuple[str, Any, Any], ...],
    body: Callable[[dict[str, Any], dict[str, Any]], None],
) -> None:
    """Register `target NAME` taking the parameters `own` plus the keyword-only `options`
    ((name, annotation, default)); it calls body(own values, option values). Its help is
    `doc_of`'s docstring."""
    extra = [
        inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a)
        for n, a, d in options
    ]

    def command(**kwargs: Any) -> None:
        opts = {n: kwargs.pop(n) for n, _, _ in options}
        body(kwargs, opts)

    command.__signature__ = inspect.Signature([*own, *extra])  # type: ignore[attr-defined]
    command.__doc__ = doc_of.__doc__
    command.__name__ = doc_of.__name__
    target.command(name)(command)


def _parameters(fn: Callable[..., Any], skip: int = 0) -> list[inspect.Parameter]:
    """fn's parameters after the first `skip`, with their annotations resolved (the command
    modules use `from __future__ import annotations`, typer needs the real Annotated types)."""
    hints = get_type_hints(fn, include_extras=True)
    params = list(inspect.signature(fn).parameters.values())[skip:]
    return [p.replace(annotation=hints[p.name]) for p in params]


def register_payload_command(
    target: typer.Typer,
    name: str,
    build: Callable[..., Any],
    options: tuple[tuple[str, Any, Any], ...],
    run: Callable[..., None],
) -> None:
    """Register `build`'s own arguments plus the shared `options` ((name, annotation,
    default)) as `target NAME`; the command calls run(build(**own), **options). `build` turns
    arguments into a payload, `run` submits it; `build`'s docstring is the help. Used by
    `consortium tx` and `consortium gov`, whose commands share their submission options."""
    _register(
        target,
        name,
        build,
        _parameters(build),
        options,
        lambda own, opts: run(build(**own), **opts),
    )


# The options of every command that reads from one node: where the node is and how long a
# call may take. read_command adds them; the command never sees them.
CONNECTION_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("endpoint", EndpointOpt, None),
    ("data_dir", DataDirOpt, None),
    ("node", NodeOpt, None),
    ("timeout", TimeoutOpt, DEFAULT_TIMEOUT),
)


@dataclass(frozen=True)
class Connection:
    """Where a read command's node is (its CONNECTION_OPTIONS); `open()` connects. A command
    checks its own arguments first and connects only then, so a bad argument is reported as
    such even when no node answers."""

    endpoint: str | None
    data_dir: Path | None
    node: str | None
    timeout: float

    def open(self) -> Client:
        return open_client(self.endpoint, self.data_dir, self.node, self.timeout)


ReadFn = Callable[..., None]


def read_command(target: typer.Typer, name: str) -> Callable[[ReadFn], ReadFn]:
    """The read-side twin of register_payload_command, as a decorator: `fn(conn, **own)`
    becomes `target NAME` with fn's own arguments plus CONNECTION_OPTIONS, which reach fn as
    one Connection. fn's docstring is the help; fn itself is returned unchanged. Used by the
    read commands of `consortium query`, `gov` and `contract`."""

    def register(fn: ReadFn) -> ReadFn:
        _register(
            target,
            name,
            fn,
            _parameters(fn, skip=1),
            CONNECTION_OPTIONS,
            lambda own, conn: fn(Connection(**conn), **own),
        )
        return fn

    return register
