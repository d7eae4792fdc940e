"""`consortium tx`: build, sign and submit one transaction (key/value, assets, governance),
optionally waiting for its commit (`--wait`, via the WaitTx RPC).

Flow: load the key, ask the node for its chain id (GetStatus) and the sender's next nonce
(QueryState nonce_of) unless `--nonce` is given, sign, SubmitBatch, then WaitTx."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from consortium_api.v1 import types_pb2

from consortium_node.client.tx import KEY_LEN, MAX_NONCE, MAX_UINT64, Payload

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
    register_payload_command,
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
        "--nonce",
        min=0,
        max=MAX_NONCE,
        help="Use this nonce instead of asking the node.",
        show_default=False,
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


# Every `tx` command takes the same submission options; `_tx_command` appends them to the
# payload builder's own arguments, so each command is just "arguments -> payload".
_COMMON_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("key", KeyOpt, None),
    ("wait", WaitOpt, False),
    ("wait_timeout", WaitTimeoutOpt, 30.0),
    ("nonce", NonceOpt, None),
    ("json_", JsonOpt, False),
    ("endpoint", EndpointOpt, None),
    ("data_dir", DataDirOpt, None),
    ("node", NodeOpt, None),
    ("timeout", TimeoutOpt, DEFAULT_TIMEOUT),
)


def _tx_command(name: str) -> Callable[[Callable[..., Payload]], Callable[..., Payload]]:
    """Register `build` (its arguments -> the tx payload) as `consortium tx NAME`, with the
    submission options of every tx command; its docstring is the command's help."""

    def register(build: Callable[..., Payload]) -> Callable[..., Payload]:
        register_payload_command(app, name, build, _COMMON_OPTIONS, submit)
        return build

    return register


def _bytes_arg(value: str, as_hex: bool, what: str) -> bytes:
    return hex_arg(value, what) if as_hex else value.encode("utf-8")


def _account(value: str) -> bytes:
    return hex_arg(value, "account (TO)", KEY_LEN)


@_tx_command("put")
def put(
    key_: Annotated[str, typer.Argument(metavar="KEY", help="Key to write.")],
    value: Annotated[str, typer.Argument(metavar="VALUE", help="Value to write.")],
    as_hex: HexOpt = False,
) -> Payload:
    """Put KEY = VALUE in the key/value state."""
    return types_pb2.KvPut(
        key=_bytes_arg(key_, as_hex, "KEY"), value=_bytes_arg(value, as_hex, "VALUE")
    )


@_tx_command("delete")
def delete(
    key_: Annotated[str, typer.Argument(metavar="KEY", help="Key to delete.")],
    as_hex: HexOpt = False,
) -> Payload:
    """Delete KEY from the key/value state."""
    return types_pb2.KvDelete(key=_bytes_arg(key_, as_hex, "KEY"))


AssetArg = Annotated[str, typer.Argument(help="Asset name.")]
ToArg = Annotated[str, typer.Argument(help="Receiving account: hex Ed25519 public key.")]
AmountArg = Annotated[int, typer.Argument(min=1, max=MAX_UINT64, help="Units (> 0).")]


@_tx_command("issue")
def issue(asset: AssetArg, to: ToArg, amount: AmountArg) -> Payload:
    """Issue AMOUNT new units of ASSET to account TO (the first issuer owns the asset)."""
    return types_pb2.AssetIssue(asset=asset, to=_account(to), amount=amount)


@_tx_command("transfer")
def transfer(asset: AssetArg, to: ToArg, amount: AmountArg) -> Payload:
    """Move AMOUNT of ASSET from your account to account TO."""
    return types_pb2.AssetTransfer(asset=asset, to=_account(to), amount=amount)


NodeIdArg = Annotated[str, typer.Argument(help="Validator node id: hex Ed25519 public key.")]


@_tx_command("add-validator")
def add_validator(
    node_id: NodeIdArg,
    org: Annotated[str, typer.Argument(help="Organisation of the validator.")],
) -> Payload:
    """Governance: add validator NODE_ID of organisation ORG."""
    return types_pb2.AddValidator(node_id=hex_arg(node_id, "NODE_ID", KEY_LEN), organization=org)


@_tx_command("remove-validator")
def remove_validator(node_id: NodeIdArg) -> Payload:
    """Governance: remove validator NODE_ID."""
    return types_pb2.RemoveValidator(node_id=hex_arg(node_id, "NODE_ID", KEY_LEN))


@_tx_command("set-param")
def set_param(
    name: Annotated[str, typer.Argument(help="Parameter name.")],
    value: Annotated[str, typer.Argument(help="New value.")],
) -> Payload:
    """Governance: set chain parameter NAME to VALUE."""
    return types_pb2.SetParam(name=name, value=value)


MemberKeyArg = Annotated[str, typer.Argument(help="Sender key: hex Ed25519 public key.")]


@_tx_command("add-member")
def add_member(
    member_key: MemberKeyArg,
    org: Annotated[str, typer.Argument(help="Organisation vouching for the key.")],
) -> Payload:
    """Governance: let sender key MEMBER_KEY transact on a permissioned chain, vouched for by
    organisation ORG."""
    return types_pb2.AddMember(key=hex_arg(member_key, "MEMBER_KEY", KEY_LEN), organization=org)


@_tx_command("remove-member")
def remove_member(member_key: MemberKeyArg) -> Payload:
    """Governance: stop vouching for sender key MEMBER_KEY (permissioned chains)."""
    return types_pb2.RemoveMember(key=hex_arg(member_key, "MEMBER_KEY", KEY_LEN))


@_tx_command("add-org")
def add_org(
    name: Annotated[str, typer.Argument(help="Name of the new member organisation.")],
    ca_file: Annotated[
        Path | None,
        typer.Argument(help="Its CA certificate (PEM); omit on a chain without TLS."),
    ] = None,
) -> Payload:
    """Governance: admit organisation NAME after genesis; every node trusts its CA (CA_FILE)
    for peer and client TLS from the block that commits it."""
    return types_pb2.AddOrganization(name=name, ca_cert=_read_ca(ca_file))


@_tx_command("set-org-ca")
def set_org_ca(
    name: Annotated[str, typer.Argument(help="Member organisation.")],
    ca_file: Annotated[Path, typer.Argument(help="PEM bundle of its CA certificate(s).")],
) -> Payload:
    """Governance: replace organisation NAME's trusted CA certificates. Rotating a CA without
    downtime: the bundle old + new first, reissue every certificate from the new CA, then the
    new CA alone."""
    return types_pb2.SetOrganizationCA(name=name, ca_cert=_read_ca(ca_file))


def _read_ca(ca_file: Path | None) -> bytes:
    if ca_file is None:
        return b""
    try:
        return ca_file.expanduser().read_bytes()
    except OSError as e:
        raise fail(f"cannot read CA file {ca_file}: {e.strerror}") from None
