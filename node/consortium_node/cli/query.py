"""`consortium query`: read committed state, transactions and blocks.

`query tx` checks client-side that the returned transaction hashes to the asked id, that its
RFC 6962 Merkle inclusion proof leads to the block's tx root, and that the header view hashes
to the block hash (fixed binary header encoding), so a node cannot make up a transaction."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from consortium_api.v1 import ledger_pb2, types_pb2
from rich.table import Table

from consortium_node.client.tx import KEY_LEN, parse_height, tx_id_of, verify_tx
from consortium_node.ledger.block import BlockHeader
from consortium_node.ledger.errors import DecodeError
from consortium_node.ledger.hashing import HASH_LEN, verify_merkle_proof

from .common import (
    Connection,
    JsonOpt,
    MinHeightOpt,
    console,
    fail,
    fmt_time_ms,
    hex_arg,
    print_json,
    read_command,
    show_bytes,
    tx_code_name,
)

app = typer.Typer(help="Read state, transactions and blocks.", no_args_is_help=True)


@read_command(app, "get")
def get(
    conn: Connection,
    key: Annotated[str, typer.Argument(help="Key to read.")],
    as_hex: Annotated[bool, typer.Option("--hex", help="KEY is hex; print VALUE as hex.")] = False,
    min_height: MinHeightOpt = 0,
    json_: JsonOpt = False,
) -> None:
    """Value of KEY in the key/value state (exit 1 if absent)."""
    k = hex_arg(key, "KEY") if as_hex else key.encode("utf-8")
    with conn.open() as client:
        r = client.query_key(k, min_height)
    if json_:
        out: dict[str, Any] = {"key": key, "found": r.found, "height": r.height}
        if r.found:
            out["value_hex"] = r.value.hex()
            try:
                out["value"] = r.value.decode("utf-8")
            except UnicodeDecodeError:
                out["value"] = None
        print_json(out)
        if not r.found:
            raise typer.Exit(1)
        return
    if not r.found:
        raise fail(f"key {key!r} not found (at height {r.height})")
    console.print(r.value.hex() if as_hex else show_bytes(r.value), markup=False)


@read_command(app, "balance")
def balance(
    conn: Connection,
    asset: Annotated[str, typer.Argument(help="Asset name.")],
    account: Annotated[str, typer.Argument(help="Account: hex Ed25519 public key.")],
    min_height: MinHeightOpt = 0,
    json_: JsonOpt = False,
) -> None:
    """Balance of ACCOUNT in ASSET."""
    acct = hex_arg(account, "ACCOUNT", KEY_LEN)
    with conn.open() as client:
        r = client.query(
            ledger_pb2.QueryStateRequest(
                balance=ledger_pb2.QueryStateRequest.Balance(asset=asset, account=acct),
                min_height=min_height,
            )
        )
    if json_:
        print_json({"asset": asset, "account": acct.hex(), "balance": r.amount, "height": r.height})
    else:
        console.print(str(r.amount))


def verify_tx_response(tx_id: bytes, r: ledger_pb2.GetTxResponse) -> list[str]:
    """Problems with a GetTx answer for `tx_id`; empty when everything verifies."""
    problems: list[str] = []
    if tx_id_of(r.tx.body) != tx_id:
        problems.append("returned tx body does not hash to the requested id")
    if not verify_tx(r.tx):
        problems.append("tx signature does not verify")
    p = r.proof
    if not verify_merkle_proof(tx_id, p.index, p.size, list(p.path), p.tx_root):
        problems.append("Merkle inclusion proof does not verify")
    h = r.header
    if p.tx_root != h.tx_root:
        problems.append("proof root differs from the block header's tx root")
    try:
        header = BlockHeader(
            height=h.height,
            time_ms=h.time_ms,
            prev_hash=h.prev_hash,
            tx_root=h.tx_root,
            state_root=h.state_root,
            validators_hash=h.validators_hash,
            proposer=h.proposer,
            version=h.version,
        )
        if header.hash != h.hash:
            problems.append("block header does not hash to the block hash")
    except Exception as e:  # malformed header fields from the node (wrong lengths, ...)
        problems.append(f"block header is malformed ({e})")
    if r.receipt.height != h.height:
        problems.append("receipt height differs from the block height")
    return problems


def _tx_json(body: types_pb2.TxBody) -> dict[str, Any]:
    kind = body.WhichOneof("payload")
    out: dict[str, Any] = {
        "chain_id": body.chain_id,
        "sender": body.sender.hex(),
        "nonce": body.nonce,
        "type": kind,
    }
    if kind is not None:
        msg = getattr(body, kind)
        fields: dict[str, Any] = {}
        for fd, v in msg.ListFields():
            fields[fd.name] = v.hex() if isinstance(v, bytes) else v
        out["payload"] = fields
    return out


@read_command(app, "tx")
def tx(
    conn: Connection,
    txid: Annotated[str, typer.Argument(metavar="TXID", help="Transaction id (hex).")],
    json_: JsonOpt = False,
) -> None:
    """A committed transaction, its receipt and its verified inclusion proof."""
    tx_id = hex_arg(txid, "TXID", HASH_LEN)
    with conn.open() as client:
        r = client.get_tx(tx_id)
    if r is None:
        raise fail(f"tx {tx_id.hex()} not found")
    problems = verify_tx_response(tx_id, r)
    try:
        body = types_pb2.TxBody.FromString(r.tx.body)
    except Exception:
        body = types_pb2.TxBody()
        problems.append("tx body does not decode")
    rc = r.receipt
    if json_:
        print_json(
            {
                "tx_id": tx_id.hex(),
                "height": rc.height,
                "index": rc.index,
                "block_hash": r.header.hash.hex(),
                "time_ms": r.header.time_ms,
                "receipt_code": int(rc.code),
                "receipt_status": tx_code_name(rc.code),
                "receipt_message": rc.message,
                "proof_verified": not problems,
                "problems": problems,
                "tx": _tx_json(body),
            }
        )
    else:
        t = Table.grid(padding=(0, 2))
        t.add_column(style="bold")
        t.add_column()
        t.add_row("tx", tx_id.hex())
        t.add_row("block", f"{rc.height}  {r.header.hash.hex()}")
        t.add_row("index", f"{rc.index} of {r.proof.size}")
        t.add_row("time", fmt_time_ms(r.header.time_ms))
        status = tx_code_name(rc.code)
        colour = "green" if rc.code == types_pb2.TX_CODE_OK else "red"
        t.add_row("result", f"[{colour}]{status}[/]" + (f": {rc.message}" if rc.message else ""))
        t.add_row("sender", body.sender.hex())
        t.add_row("nonce", str(body.nonce))
        kind = body.WhichOneof("payload") or "-"
        t.add_row("type", kind)
        t.add_row(
            "proof",
            "[green]verified[/] (Merkle path to tx root, header hash)"
            if not problems
            else "[red]FAILED[/]",
        )
        console.print(t)
    if problems:
        raise fail(f"tx {tx_id.hex()}: " + "; ".join(problems))


def _block_json(b: types_pb2.Block, with_txs: bool) -> dict[str, Any]:
    h = b.header_view
    out: dict[str, Any] = {
        "height": h.height,
        "hash": h.hash.hex(),
        "prev_hash": h.prev_hash.hex(),
        "time_ms": h.time_ms,
        "tx_root": h.tx_root.hex(),
        "state_root": h.state_root.hex(),
        "validators_hash": h.validators_hash.hex(),
        "proposer": h.proposer.hex(),
        "tx_count": len(b.txs) or len(b.tx_ids),
        "certificate": {
            "round": b.certificate.round,
            "signers": [s.signer.hex() for s in b.certificate.signatures],
        },
    }
    if with_txs:
        out["tx_ids"] = [i.hex() for i in block_tx_ids(b)]
    return out


def block_tx_ids(b: types_pb2.Block) -> list[bytes]:
    if b.tx_ids:
        return list(b.tx_ids)
    ids = []
    for raw in b.txs:
        try:
            ids.append(tx_id_of(types_pb2.SignedTx.FromString(raw).body))
        except Exception:
            ids.append(b"")
    return ids


def block_header_ok(b: types_pb2.Block) -> bool:
    """The binary header hashes to the view's hash and decodes to the same height."""
    try:
        header = BlockHeader.decode(b.header)
    except DecodeError:
        return False
    return header.hash == b.header_view.hash and header.height == b.header_view.height


@read_command(app, "block")
def block(
    conn: Connection,
    which: Annotated[
        str, typer.Argument(metavar="HEIGHT|HASH", help="Height, 64-hex-char hash, or 'latest'.")
    ],
    txs: Annotated[bool, typer.Option("--txs", help="List the tx ids.")] = False,
    json_: JsonOpt = False,
) -> None:
    """A block by height or hash."""
    by: int | bytes | None = None  # None: the latest height, asked of the node
    # a 64-char hash is never read as a height (a uint64 has at most 20 digits)
    if which != "latest" and len(which.strip().removeprefix("0x")) != 2 * HASH_LEN:
        try:
            by = parse_height(which, "HEIGHT")
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="HEIGHT|HASH") from None
    if by is None and which != "latest":
        by = hex_arg(which, "HEIGHT|HASH (a height or a 32-byte hash)", HASH_LEN)
    with conn.open() as client:
        if by is None:
            by = int(client.status().height)
        b = client.get_block(by)
    if json_:
        out = _block_json(b, txs)
        out["header_verified"] = block_header_ok(b)
        print_json(out)
        return
    h = b.header_view
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    t.add_row("height", str(h.height))
    t.add_row("hash", h.hash.hex())
    t.add_row("prev", h.prev_hash.hex())
    t.add_row("time", fmt_time_ms(h.time_ms))
    t.add_row("txs", str(len(b.txs) or len(b.tx_ids)))
    t.add_row("tx root", h.tx_root.hex())
    t.add_row("state root", h.state_root.hex())
    t.add_row("validators", h.validators_hash.hex())
    t.add_row("proposer", h.proposer.hex())
    sigs = b.certificate.signatures
    t.add_row("certificate", f"round {b.certificate.round}, {len(sigs)} signature(s)")
    t.add_row("header", "[green]hash verified[/]" if block_header_ok(b) else "[red]MISMATCH[/]")
    console.print(t)
    if txs:
        for i in block_tx_ids(b):
            console.print(i.hex())
