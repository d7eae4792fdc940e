"""`consortium tx`: build, sign and submit one transaction (key/value, assets, governance),
optionally waiting for its commit (`--wait`, via the WaitTx RPC).

Flow: load the key, ask the node for its chain id (GetStatus) and the sender's next nonce
(QueryState nonce_of) unless `--nonce` is given, sign, SubmitBatch, then WaitTx."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from consortium_api.v1 import types_pb2

from consortium_node.client import KEY_LEN, Payload

from .common import (
    DEFAULT_TIMEOUT,
    DataDirOpt,
    EndpointOpt,
    JsonOpt,
    KeyOpt,
    NodeOpt,
    TimeoutOpt,
    console,
    fail,
    hex_arg,
    load_signer,
    open_client,
    print_json,
    status_name,
    tx_code_name,
)

app = typer.Typer(help="Sign and submit transactions.", no_args_is_help=True)

WaitOpt = Annotated[bool, typer.Option("--wait", "-w", help="Wait until the tx is committed.")]
WaitTimeoutOpt = Annotated[
    float, typer.Option("--wait-timeout", min=0.1, help="How long --wait waits, in seconds.")
]
NonceOpt = Annotated[
    int | None,
    typer.Option(
        "--nonce", min=0, help="Use this nonce instead of asking the node.", show_default=False
    ),
]
HexOpt = Annotated[bool, typer.Option("--hex", help="KEY and VALUE are hex-encoded bytes.")]


def submit(
    payload: Payload,
    *,
    key: Path | None,
    endpoint: str | None,
    data_dir: Path | None,
    node: str | None,
    timeout: float,
    wait: bool,
    wait_timeout: float,
    json_: bool,
    nonce: int | None,
) -> None:
    signer = load_signer(key, data_dir)
    with open_client(endpoint, data_dir, node, timeout) as client:
        chain_id = client.status().chain_id
        n = nonce if nonce is not None else client.next_nonce(signer.public_key)
        tx_id, tx = signer.build_tx(chain_id, n, payload)
        [res] = client.submit([tx])
        out: dict[str, Any] = {
            "tx_id": tx_id.hex(),
            "sender": signer.public_key.hex(),
            "nonce": n,
            "code": res.code,
            "status": status_name(res.code),
            "message": res.message,
        }
        if res.code != 0:
            if json_:
                print_json(out)
            raise fail(f"tx {tx_id.hex()} rejected: {status_name(res.code)}: {res.message}")
        if not wait:
            if json_:
                print_json(out)
            else:
                console.print(f"tx [bold]{tx_id.hex()}[/] accepted (nonce {n})")
            return
        got = client.wait_tx(tx_id, wait_timeout)
        r = got.receipt
        out |= {
            "committed": True,
            "height": r.height,
            "index": r.index,
            "receipt_code": int(r.code),
            "receipt_status": tx_code_name(r.code),
            "receipt_message": r.message,
        }
        if json_:
            print_json(out)
        elif r.code == types_pb2.TX_CODE_OK:
            console.print(
                f"tx [bold]{tx_id.hex()}[/] committed at height [bold]{r.height}[/] "
                f"(index {r.index}): [green]OK[/]"
            )
        if r.code != types_pb2.TX_CODE_OK:
            msg = f": {r.message}" if r.message else ""
            raise fail(
                f"tx {tx_id.hex()} committed at height {r.height} but failed: "
                f"{tx_code_name(r.code)}{msg}"
            )


def _bytes_arg(value: str, as_hex: bool, what: str) -> bytes:
    return hex_arg(value, what) if as_hex else value.encode("utf-8")


def _account(value: str) -> bytes:
    return hex_arg(value, "account (TO)", KEY_LEN)


@app.command("put")
def put(
    key_: Annotated[str, typer.Argument(metavar="KEY", help="Key to write.")],
    value: Annotated[str, typer.Argument(metavar="VALUE", help="Value to write.")],
    as_hex: HexOpt = False,
    key: KeyOpt = None,
    wait: WaitOpt = False,
    wait_timeout: WaitTimeoutOpt = 30.0,
    nonce: NonceOpt = None,
    json_: JsonOpt = False,
    endpoint: EndpointOpt = None,
    data_dir: DataDirOpt = None,
    node: NodeOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
) -> None:
    """Put KEY = VALUE in the key/value state."""
    payload = types_pb2.KvPut(
        key=_bytes_arg(key_, as_hex, "KEY"), value=_bytes_arg(value, as_hex, "VALUE")
    )
    submit(
        payload,
        key=key,
        endpoint=endpoint,
        data_dir=data_dir,
        node=node,
        timeout=timeout,
        wait=wait,
        wait_timeout=wait_timeout,
        json_=json_,
        nonce=nonce,
    )


@app.command("delete")
def delete(
    key_: Annotated[str, typer.Argument(metavar="KEY", help="Key to delete.")],
    as_hex: HexOpt = False,
    key: KeyOpt = None,
    wait: WaitOpt = False,
    wait_timeout: WaitTimeoutOpt = 30.0,
    nonce: NonceOpt = None,
    json_: JsonOpt = False,
    endpoint: EndpointOpt = None,
    data_dir: DataDirOpt = None,
    node: NodeOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
) -> None:
    """Delete KEY from the key/value state."""
    payload = types_pb2.KvDelete(key=_bytes_arg(key_, as_hex, "KEY"))
    submit(
        payload,
        key=key,
        endpoint=endpoint,
        data_dir=data_dir,
        node=node,
        timeout=timeout,
        wait=wait,
        wait_timeout=wait_timeout,
        json_=json_,
        nonce=nonce,
    )


AssetArg = Annotated[str, typer.Argument(help="Asset name.")]
ToArg = Annotated[str, typer.Argument(help="Receiving account: hex Ed25519 public key.")]
AmountArg = Annotated[int, typer.Argument(min=1, max=2**64 - 1, help="Units (> 0).")]


@app.command("issue")
def issue(
    asset: AssetArg,
    to: ToArg,
    amount: AmountArg,
    key: KeyOpt = None,
    wait: WaitOpt = False,
    wait_timeout: WaitTimeoutOpt = 30.0,
    nonce: NonceOpt = None,
    json_: JsonOpt = False,
    endpoint: EndpointOpt = None,
    data_dir: DataDirOpt = None,
    node: NodeOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
) -> None:
    """Issue AMOUNT new units of ASSET to account TO (the first issuer owns the asset)."""
    payload = types_pb2.AssetIssue(asset=asset, to=_account(to), amount=amount)
    submit(
        payload,
        key=key,
        endpoint=endpoint,
        data_dir=data_dir,
        node=node,
        timeout=timeout,
        wait=wait,
        wait_timeout=wait_timeout,
        json_=json_,
        nonce=nonce,
    )


@app.command("transfer")
def transfer(
    asset: AssetArg,
    to: ToArg,
    amount: AmountArg,
    key: KeyOpt = None,
    wait: WaitOpt = False,
    wait_timeout: WaitTimeoutOpt = 30.0,
    nonce: NonceOpt = None,
    json_: JsonOpt = False,
    endpoint: EndpointOpt = None,
    data_dir: DataDirOpt = None,
    node: NodeOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
) -> None:
    """Move AMOUNT of ASSET from your account to account TO."""
    payload = types_pb2.AssetTransfer(asset=asset, to=_account(to), amount=amount)
    submit(
        payload,
        key=key,
        endpoint=endpoint,
        data_dir=data_dir,
        node=node,
        timeout=timeout,
        wait=wait,
        wait_timeout=wait_timeout,
        json_=json_,
        nonce=nonce,
    )


NodeIdArg = Annotated[str, typer.Argument(help="Validator node id: hex Ed25519 public key.")]


@app.command("add-validator")
def add_validator(
    node_id: NodeIdArg,
    org: Annotated[str, typer.Argument(help="Organisation of the validator.")],
    key: KeyOpt = None,
    wait: WaitOpt = False,
    wait_timeout: WaitTimeoutOpt = 30.0,
    nonce: NonceOpt = None,
    json_: JsonOpt = False,
    endpoint: EndpointOpt = None,
    data_dir: DataDirOpt = None,
    node: NodeOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
) -> None:
    """Governance: add validator NODE_ID of organisation ORG."""
    payload = types_pb2.AddValidator(node_id=hex_arg(node_id, "NODE_ID", KEY_LEN), organization=org)
    submit(
        payload,
        key=key,
        endpoint=endpoint,
        data_dir=data_dir,
        node=node,
        timeout=timeout,
        wait=wait,
        wait_timeout=wait_timeout,
        json_=json_,
        nonce=nonce,
    )


@app.command("remove-validator")
def remove_validator(
    node_id: NodeIdArg,
    key: KeyOpt = None,
    wait: WaitOpt = False,
    wait_timeout: WaitTimeoutOpt = 30.0,
    nonce: NonceOpt = None,
    json_: JsonOpt = False,
    endpoint: EndpointOpt = None,
    data_dir: DataDirOpt = None,
    node: NodeOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
) -> None:
    """Governance: remove validator NODE_ID."""
    payload = types_pb2.RemoveValidator(node_id=hex_arg(node_id, "NODE_ID", KEY_LEN))
    submit(
        payload,
        key=key,
        endpoint=endpoint,
        data_dir=data_dir,
        node=node,
        timeout=timeout,
        wait=wait,
        wait_timeout=wait_timeout,
        json_=json_,
        nonce=nonce,
    )


@app.command("set-param")
def set_param(
    name: Annotated[str, typer.Argument(help="Parameter name.")],
    value: Annotated[str, typer.Argument(help="New value.")],
    key: KeyOpt = None,
    wait: WaitOpt = False,
    wait_timeout: WaitTimeoutOpt = 30.0,
    nonce: NonceOpt = None,
    json_: JsonOpt = False,
    endpoint: EndpointOpt = None,
    data_dir: DataDirOpt = None,
    node: NodeOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
) -> None:
    """Governance: set chain parameter NAME to VALUE."""
    payload = types_pb2.SetParam(name=name, value=value)
    submit(
        payload,
        key=key,
        endpoint=endpoint,
        data_dir=data_dir,
        node=node,
        timeout=timeout,
        wait=wait,
        wait_timeout=wait_timeout,
        json_=json_,
        nonce=nonce,
    )


MemberKeyArg = Annotated[str, typer.Argument(help="Sender key: hex Ed25519 public key.")]


@app.command("add-member")
def add_member(
    member_key: MemberKeyArg,
    org: Annotated[str, typer.Argument(help="Organisation vouching for the key.")],
    key: KeyOpt = None,
    wait: WaitOpt = False,
    wait_timeout: WaitTimeoutOpt = 30.0,
    nonce: NonceOpt = None,
    json_: JsonOpt = False,
    endpoint: EndpointOpt = None,
    data_dir: DataDirOpt = None,
    node: NodeOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
) -> None:
    """Governance: let sender key MEMBER_KEY transact on a permissioned chain, vouched for by
    organisation ORG."""
    payload = types_pb2.AddMember(key=hex_arg(member_key, "MEMBER_KEY", KEY_LEN), organization=org)
    submit(
        payload,
        key=key,
        endpoint=endpoint,
        data_dir=data_dir,
        node=node,
        timeout=timeout,
        wait=wait,
        wait_timeout=wait_timeout,
        json_=json_,
        nonce=nonce,
    )


@app.command("remove-member")
def remove_member(
    member_key: MemberKeyArg,
    key: KeyOpt = None,
    wait: WaitOpt = False,
    wait_timeout: WaitTimeoutOpt = 30.0,
    nonce: NonceOpt = None,
    json_: JsonOpt = False,
    endpoint: EndpointOpt = None,
    data_dir: DataDirOpt = None,
    node: NodeOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
) -> None:
    """Governance: stop vouching for sender key MEMBER_KEY (permissioned chains)."""
    payload = types_pb2.RemoveMember(key=hex_arg(member_key, "MEMBER_KEY", KEY_LEN))
    submit(
        payload,
        key=key,
        endpoint=endpoint,
        data_dir=data_dir,
        node=node,
        timeout=timeout,
        wait=wait,
        wait_timeout=wait_timeout,
        json_=json_,
        nonce=nonce,
    )
