"""`consortium contract`: WebAssembly contracts from the command line — deploy and upgrade
(governance proposals: your organisation proposes and votes yes, the others vote with
`consortium gov vote`), call (an Invoke transaction), query (a read-only call one node
answers), events (from receipts, filtered by contract and topic, optionally following new
blocks), list and show.

Thin: payloads come from consortium_node.client.contracts, proposals are submitted by
cli/gov.py's `send` (which prints the proposal's tally), submission options are the shared
ones of cli/common.py. Inputs are bytes: `--arg TYPE:VALUE` pieces (u8, u32, u64 little-endian
as the example contracts read them; key: a 32-byte public key in hex or from a key file;
hex:; str:) concatenated in order, or `--input-hex`/`--input-file`; results print as text
when printable, else 0x-hex, or decoded with `--result u64`. Every refusal or failed call is
one line on stderr and exit status 1. Registered by cli/app.py."""

from __future__ import annotations

import string
import struct
from pathlib import Path
from typing import Annotated, Any

import typer
from consortium_api.v1 import ledger_pb2, types_pb2

from consortium_node.client import contracts
from consortium_node.client.tx import KEY_LEN, MAX_UINT64, Payload
from consortium_node.crypto import KeyFileError

from . import gov
from .common import (
    Connection,
    JsonOpt,
    MinHeightOpt,
    console,
    fail,
    hex_arg,
    load_signer,
    open_client,
    print_json,
    read_command,
    register_payload_command,
    show_bytes,
)

app = typer.Typer(
    help="WebAssembly contracts: deploy/upgrade through governance, call, query, events.",
    no_args_is_help=True,
)

WASM_MAGIC = b"\x00asm"
RESULT_FORMATS = ("auto", "hex", "u64", "utf8")

NameArg = Annotated[str, typer.Argument(help="Contract name on chain.")]
FileArg = Annotated[Path, typer.Argument(help="The contract module (.wasm).")]
MethodArg = Annotated[str, typer.Argument(help="Method (an exported function).")]
ArgOpt = Annotated[
    list[str],
    typer.Option(
        "--arg",
        "-a",
        help="Input piece TYPE:VALUE, repeatable, concatenated in order: u8:, u32:, u64: "
        "(little-endian), key: (hex public key or a key file), hex:, str:.",
    ),
]
InputHexOpt = Annotated[
    str | None, typer.Option("--input-hex", help="The whole input as hex.", show_default=False)
]
InputFileOpt = Annotated[
    Path | None,
    typer.Option("--input-file", help="The whole input from a file.", show_default=False),
]
FuelOpt = Annotated[
    int,
    typer.Option("--fuel", min=1, max=10**12, help="Fuel limit of the call."),
]
ResultOpt = Annotated[
    str,
    typer.Option("--result", "-r", help="How to print the result: auto, hex, u64 or utf8."),
]


# --------------------------------------------------------------------------- inputs


def _read_file(path: Path, what: str) -> bytes:
    try:
        return path.expanduser().read_bytes()
    except OSError as e:
        raise fail(f"cannot read {what} {path}: {e.strerror}") from None


def _int_piece(kind: str, value: str, bits: int) -> bytes:
    try:
        n = int(value, 0)
    except ValueError:
        raise typer.BadParameter(f"{kind}:{value} is not a number", param_hint="--arg") from None
    if not 0 <= n < 1 << bits:
        raise typer.BadParameter(
            f"{kind}:{value} is out of range 0..2^{bits}-1", param_hint="--arg"
        )
    return n.to_bytes(bits // 8, "little")


def _key_piece(value: str) -> bytes:
    """A public key: 64 hex characters, or the public key of a key file (any other value
    naming a file: a 64-character path is a path, not a key, unless it is all hex)."""
    path = Path(value).expanduser()
    is_hex = len(value) == 2 * KEY_LEN and all(c in string.hexdigits for c in value)
    if not is_hex and path.exists():
        try:
            return load_signer(path, None).public_key
        except KeyFileError as e:
            raise typer.BadParameter(f"key:{value}: {e}", param_hint="--arg") from None
    return hex_arg(value, f"key:{value} (a hex public key or a key file)", KEY_LEN)


def arg_bytes(piece: str) -> bytes:
    """One `--arg TYPE:VALUE` as bytes."""
    kind, sep, value = piece.partition(":")
    if not sep:
        raise typer.BadParameter(f"{piece!r} is not TYPE:VALUE", param_hint="--arg")
    if kind in ("u8", "u32", "u64"):
        return _int_piece(kind, value, int(kind[1:]))
    if kind == "key":
        return _key_piece(value)
    if kind == "hex":
        return hex_arg(value, f"hex:{value}")
    if kind == "str":
        return value.encode("utf-8")
    raise typer.BadParameter(
        f"unknown type {kind!r} in {piece!r} (u8, u32, u64, key, hex, str)", param_hint="--arg"
    )


def call_input(args: list[str], input_hex: str | None, input_file: Path | None) -> bytes:
    given = sum(1 for x in (bool(args), input_hex is not None, input_file is not None) if x)
    if given > 1:
        raise typer.BadParameter("give the input as --arg pieces, --input-hex or --input-file")
    if input_hex is not None:
        return hex_arg(input_hex, "--input-hex")
    if input_file is not None:
        return _read_file(input_file, "input file")
    return b"".join(arg_bytes(a) for a in args)


def _module(file: Path) -> bytes:
    code = _read_file(file, "contract module")
    if not code.startswith(WASM_MAGIC):
        raise fail(f"{file} is not a WebAssembly module (no \\0asm header)")
    return code


# --------------------------------------------------------------------------- output


def render_result(data: bytes, fmt: str) -> str:
    if fmt == "hex":
        return "0x" + data.hex()
    if fmt == "u64":
        if len(data) != 8:
            raise fail(f"the result is {len(data)} bytes, not a u64 (8): 0x{data.hex()}")
        return str(struct.unpack("<Q", data)[0])
    if fmt == "utf8":
        return data.decode("utf-8", "replace")
    return show_bytes(data) if data else "(empty)"


def _check_format(fmt: str) -> None:
    if fmt not in RESULT_FORMATS:
        raise typer.BadParameter(
            f"{fmt!r}: one of {', '.join(RESULT_FORMATS)}", param_hint="--result"
        )


def _events(events: Any) -> list[dict[str, str]]:
    return [{"topic": show_bytes(e[0]), "data": "0x" + e[1].hex()} for e in events]


def _print_events(events: list[dict[str, str]]) -> None:
    for e in events:
        console.print(f"  event {e['topic']} {e['data']}", markup=False)


# --------------------------------------------------------------------------- deploy / upgrade

TtlOpt = Annotated[
    int,
    typer.Option("--ttl", min=1, max=1_000_000, help="Blocks until the proposal expires."),
]


def deploy(
    name: NameArg,
    file: FileArg,
    arg: ArgOpt = [],  # noqa: B006 -- typer's list option default
    input_hex: InputHexOpt = None,
    input_file: InputFileOpt = None,
    ttl: TtlOpt = contracts.DEFAULT_TTL,
) -> Payload:
    """Propose deploying FILE as contract NAME.

    Its init runs with the given input once the policy is met (MAJORITY of organisations by
    default). Sign with an organisation admin key; the others vote with `consortium gov vote
    ID yes`."""
    init = call_input(arg, input_hex, input_file)
    return contracts.deploy_proposal(name, _module(file), init_input=init, ttl=ttl)


def upgrade(name: NameArg, file: FileArg, ttl: TtlOpt = contracts.DEFAULT_TTL) -> Payload:
    """Propose replacing contract NAME's code by FILE.

    Its state is kept; an `upgrade` export runs once. Policy upgrade_contract: MAJORITY by
    default."""
    return contracts.upgrade_proposal(name, _module(file), ttl=ttl)


for _name, _build in (("deploy", deploy), ("upgrade", upgrade)):
    register_payload_command(app, _name, _build, gov._SUBMIT_OPTIONS, gov.send)


# --------------------------------------------------------------------------- call


def call(
    contract: NameArg,
    method: MethodArg,
    arg: ArgOpt = [],  # noqa: B006 -- typer's list option default
    input_hex: InputHexOpt = None,
    input_file: InputFileOpt = None,
    fuel: FuelOpt = contracts.DEFAULT_FUEL,
    result: ResultOpt = "auto",
) -> tuple[Payload, str]:
    """Call METHOD of CONTRACT in a transaction (signed by --key).

    Prints its result, fuel used and events once committed. A failed call (abort, trap, out
    of fuel) exits 1 with the chain's reason; none of its writes or events are kept."""
    _check_format(result)
    return contracts.invoke(contract, method, call_input(arg, input_hex, input_file), fuel), result


def _invoke(
    built: tuple[types_pb2.Invoke, str],
    *,
    key: Path | None,
    no_wait: bool,
    wait_timeout: float,
    json_: bool,
    endpoint: str | None,
    data_dir: Path | None,
    node: str | None,
    timeout: float,
) -> None:
    payload, fmt = built
    what = f"{payload.contract}.{payload.method}"
    signer = load_signer(key, data_dir)
    with open_client(endpoint, data_dir, node, timeout) as client:
        chain_id = client.status().chain_id
        tx_id, tx = signer.build_tx(chain_id, client.next_nonce(signer.public_key), payload)
        [res] = client.submit([tx])
        if res.code != 0:
            raise fail(f"call {what} refused: {res.message or f'code {res.code}'}")
        if no_wait:
            if json_:
                print_json({"tx_id": tx_id.hex(), "committed": False})
            else:
                console.print(f"tx {tx_id.hex()} accepted", markup=False)
            return
        got = client.wait_tx(tx_id, wait_timeout)
        if not got.receipt.HasField("contract"):
            raise fail(f"call {what} failed: {got.receipt.message or 'it ran no contract code'}")
        o = contracts.outcome(got)
    events = _events(o.events)
    out: dict[str, Any] = {
        "tx_id": tx_id.hex(),
        "height": o.height,
        "ok": o.ok,
        "reason": o.reason,
        "fuel_used": o.fuel_used,
        "result": render_result(o.result, fmt) if o.ok else "",
        "events": events,
    }
    if json_:
        print_json(out)
    elif o.ok:
        console.print(
            f"call {what} committed at height {o.height}: OK, fuel used {o.fuel_used}; "
            f"result {out['result']}",
            markup=False,
        )
        _print_events(events)
    if not o.ok:
        raise fail(f"call {what} failed at height {o.height}: {o.reason} (fuel used {o.fuel_used})")


register_payload_command(app, "call", call, gov._SUBMIT_OPTIONS, _invoke)


# --------------------------------------------------------------------------- reads

CallerOpt = Annotated[
    str | None,
    typer.Option(
        "--caller",
        help="Who the contract sees as caller: a hex public key or a key file (default: "
        "all zeros).",
        show_default=False,
    ),
]


@read_command(app, "query")
def query(
    conn: Connection,
    contract: NameArg,
    method: MethodArg,
    arg: ArgOpt = [],  # noqa: B006 -- typer's list option default
    input_hex: InputHexOpt = None,
    input_file: InputFileOpt = None,
    caller: CallerOpt = None,
    fuel: Annotated[
        int,
        typer.Option("--fuel", min=0, max=10**12, help="Fuel limit (0: the chain's query cap)."),
    ] = 0,
    result: ResultOpt = "auto",
    min_height: MinHeightOpt = 0,
    json_: JsonOpt = False,
) -> None:
    """Read-only call of METHOD of CONTRACT; prints the result.

    Runs against the committed state on one node; nothing is written."""
    _check_format(result)
    data = call_input(arg, input_hex, input_file)
    who = _key_piece(caller) if caller is not None else b""
    with conn.open() as client:
        got = client.query_contract(
            contract, method, data, fuel_limit=fuel, caller=who, min_height=min_height
        )
    r = got.receipt
    if not r.ok:
        raise fail(f"query {contract}.{method} failed: {r.reason} (fuel used {r.fuel_used})")
    text = render_result(r.result, result)
    if json_:
        print_json(
            {
                "height": got.height,
                "result": text,
                "fuel_used": r.fuel_used,
                "events": _events((e.topic, e.data) for e in r.events),
            }
        )
    else:
        console.print(text, markup=False)


def info_dict(c: types_pb2.ContractInfo) -> dict[str, Any]:
    return {
        "name": c.name,
        "version": c.version,
        "code_hash": c.code_hash.hex(),
        "deployed_height": c.deployed_height,
        "upgraded_height": c.upgraded_height,
        "methods": list(c.methods),
    }


@read_command(app, "list")
def list_(
    conn: Connection,
    json_: JsonOpt = False,
) -> None:
    """The chain's contracts: name, version, code hash, methods."""
    with conn.open() as client:
        got: ledger_pb2.ListContractsResponse = client.list_contracts()
    rows = [info_dict(c) for c in sorted(got.contracts, key=lambda c: c.name)]
    if json_:
        print_json({"height": got.height, "engine": got.engine, "contracts": rows})
        return
    if not rows:
        console.print("no contracts", markup=False)
    for r in rows:
        console.print(
            f"{r['name']}  version {r['version']}  code {r['code_hash'][:16]}  "
            f"methods {', '.join(r['methods']) or '-'}",
            markup=False,
        )


@read_command(app, "show")
def show(
    conn: Connection,
    name: NameArg,
    json_: JsonOpt = False,
) -> None:
    """Contract NAME: version, code hash, deployment and upgrade heights, methods."""
    with conn.open() as client:
        c = client.get_contract(name)
    d = info_dict(c)
    if json_:
        print_json(d)
        return
    upgraded = f", upgraded at height {d['upgraded_height']}" if d["upgraded_height"] else ""
    console.print(
        f"contract {d['name']} version {d['version']}: code {d['code_hash']}, deployed at "
        f"height {d['deployed_height']}{upgraded}; methods {', '.join(d['methods']) or '-'}",
        markup=False,
    )


@read_command(app, "events")
def events(
    conn: Connection,
    contract: Annotated[str, typer.Argument(help="Contract name (default: every contract).")] = "",
    topic: Annotated[
        str, typer.Option("--topic", "-t", help="Only events with this topic (UTF-8).")
    ] = "",
    from_height: Annotated[
        int, typer.Option("--from", min=1, max=MAX_UINT64, help="First block height.")
    ] = 1,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing the events of new blocks.")
    ] = False,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=0, help="Stop after N events (0: no limit).")
    ] = 0,
    json_: Annotated[bool, typer.Option("--json", help="One JSON object per event.")] = False,
) -> None:
    """Contract events from the receipts of committed blocks, oldest first."""
    n = 0
    with conn.open() as client:
        stream = client.stream_events(
            contract,
            topic.encode(),
            from_height,
            follow=follow,
            timeout=None if follow else conn.timeout,
        )
        for ev in stream:
            d: dict[str, Any] = {
                "height": ev.height,
                "tx_id": ev.tx_id.hex(),
                "contract": ev.contract,
                "method": ev.method,
                "topic": show_bytes(ev.topic),
                "data": "0x" + ev.data.hex(),
            }
            if json_:
                print_json(d)
            else:
                console.print(
                    f"height {d['height']} {d['contract']}.{d['method']} {d['topic']} "
                    f"{d['data']} (tx {d['tx_id'][:16]})",
                    markup=False,
                )
            n += 1
            if limit and n >= limit:
                break
