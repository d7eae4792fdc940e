"""Synchronous client of a consortium node's `Ledger` gRPC service, plus key files and
transaction building/signing.

Who calls it: the `consortium` CLI (`consortium_node.cli`), the integration and e2e tests, and
the benchmarks. It is a client-side module: it talks gRPC to a node but never imports node
internals other than the pure `ledger.hashing` helpers.

- `Signer`: an Ed25519 key (PyNaCl). `Signer.load/save` read and write the key file
  `{"public_key": hex, "private_key": hex of the 32-byte seed}` (mode 0600);
  `Signer.build_tx(chain_id, nonce, payload)` serialises a `TxBody` ONCE, signs those exact
  bytes and returns `(tx_id, SignedTx)` where `tx_id = SHA-256(body)`.
- `Client(endpoint, timeout)`: one gRPC channel, one method per RPC, every unary call with a
  deadline. gRPC failures surface as `ClientError` (or its subclass `NodeUnavailable`) whose
  text is one readable line naming the node and the problem.
- `DataDir` / `connect()`: read `DIR/endpoints.json` written by `consortium up` and connect to
  the first node that answers (or a named one).
- `ClientTLS`: the CA bundle (every organisation's CA) and this user's client certificate and
  key, from a TLS directory (`ca.pem`, `client.pem`, `client.key`). Found without flags: the
  data dir's `tls/` (local consortium), else $CONSORTIUM_TLS_DIR (`consortium --tls-dir`),
  else the current context's `tls_dir`, else ~/.consortium/tls when it exists; none of these:
  plaintext (a dev node).
- Contexts (kubeconfig-style, for clusters): ~/.consortium/contexts.yaml (or
  $CONSORTIUM_CONTEXTS) holds `current: NAME` and `contexts: {NAME: {endpoint, tls_dir, key}}`
  (paths relative to the file); `consortium --context NAME` or $CONSORTIUM_CONTEXT picks one.
  Explicit flags and the other variables win over the context.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeAlias

import grpc
from consortium_api.v1 import ledger_pb2, ledger_pb2_grpc, types_pb2
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

DEFAULT_ENDPOINT = "127.0.0.1:7050"
DEFAULT_TLS_DIR = Path("~/.consortium/tls")
DEFAULT_CONTEXTS = Path("~/.consortium/contexts.yaml")
DEFAULT_TIMEOUT = 5.0
KEY_LEN = 32
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

Payload: TypeAlias = (
    types_pb2.KvPut
    | types_pb2.KvDelete
    | types_pb2.AssetIssue
    | types_pb2.AssetTransfer
    | types_pb2.AddValidator
    | types_pb2.RemoveValidator
    | types_pb2.SetParam
    | types_pb2.AddMember
    | types_pb2.RemoveMember
    | types_pb2.AddOrganization
    | types_pb2.SetOrganizationCA
    | types_pb2.SetAdmins
    | types_pb2.SetPolicy
    | types_pb2.ReplaceValidator
    | types_pb2.Propose
    | types_pb2.Vote
    | types_pb2.Withdraw
    | types_pb2.SubmitEndorsed
    | types_pb2.MigrateGovernance
)

# payload message type -> name of its field in the `TxBody.payload` oneof
_PAYLOAD_FIELD: dict[type[Any], str] = {
    types_pb2.KvPut: "kv_put",
    types_pb2.KvDelete: "kv_delete",
    types_pb2.AssetIssue: "asset_issue",
    types_pb2.AssetTransfer: "asset_transfer",
    types_pb2.AddValidator: "add_validator",
    types_pb2.RemoveValidator: "remove_validator",
    types_pb2.SetParam: "set_param",
    types_pb2.AddMember: "add_member",
    types_pb2.RemoveMember: "remove_member",
    types_pb2.AddOrganization: "add_organization",
    types_pb2.SetOrganizationCA: "set_organization_ca",
    types_pb2.SetAdmins: "set_admins",
    types_pb2.SetPolicy: "set_policy",
    types_pb2.ReplaceValidator: "replace_validator",
    types_pb2.Propose: "propose",
    types_pb2.Vote: "vote",
    types_pb2.Withdraw: "withdraw",
    types_pb2.SubmitEndorsed: "submit_endorsed",
    types_pb2.MigrateGovernance: "migrate_governance",
}


# --------------------------------------------------------------------------- errors


class ClientError(Exception):
    """A failure a user can act on; `str(err)` is one line. `code` is the gRPC status code
    when the node answered with one."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message


class NodeUnavailable(ClientError):
    """The node could not be reached (connection refused, DNS, no answer in time)."""


class KeyFileError(ClientError):
    """A key file is missing, unreadable or malformed, or would be overwritten."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _unreachable_reason(details: str, timeout: float | None) -> str:
    low = details.lower()
    if "connection refused" in low:
        return "connection refused"
    if any(
        m in low for m in ("dns resolution failed", "errors resolving", "name or service not known")
    ):
        return "cannot resolve host"
    if "deadline" in low or "timeout" in low or "timed out" in low:
        return f"no answer within {timeout:g}s" if timeout else "timed out"
    if "hostname verification" in low:
        return (
            "TLS handshake failed: the node's certificate does not name the host we dialled "
            "(use the name it was issued for, or set the server name)"
        )
    if any(m in low for m in ("handshake", "ssl", "tls", "certificate", "verification")):
        return (
            "TLS handshake failed: the node's certificate is not from a consortium CA we trust, "
            "or it refused ours; check the TLS directory (--tls-dir, $CONSORTIUM_TLS_DIR)"
        )
    if "connection reset" in low:
        return "connection reset"
    if any(m in low for m in ("socket closed", "end of tcp stream", "goaway", "cancelling all")):
        return "connection closed by the node"
    return _one_line(details)[:200] or "unavailable"


def _code_of(err: grpc.RpcError) -> grpc.StatusCode | None:
    """The status code of a failed call (RpcError raised by a call is also a grpc.Call)."""
    fn = getattr(err, "code", None)
    code = fn() if callable(fn) else None
    return code if isinstance(code, grpc.StatusCode) else None


def translate_rpc_error(err: grpc.RpcError, endpoint: str, timeout: float | None) -> ClientError:
    """Turn a grpc.RpcError into a one-line `ClientError` naming the node."""
    code = _code_of(err)
    details_fn = getattr(err, "details", None)
    details = str(details_fn() or "") if callable(details_fn) else ""
    if code is grpc.StatusCode.UNAVAILABLE:
        reason = _unreachable_reason(details, timeout)
        return NodeUnavailable(f"node {endpoint} unreachable ({reason})", code)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return NodeUnavailable(
            f"node {endpoint} did not answer within {timeout:g}s"
            if timeout
            else f"node {endpoint} did not answer in time",
            code,
        )
    name = code.name if code is not None else "UNKNOWN"
    msg = _one_line(details) or name.lower().replace("_", " ")
    return ClientError(f"node {endpoint}: {name}: {msg}", code)


# --------------------------------------------------------------------------- transactions


def tx_id_of(body: bytes) -> bytes:
    """The transaction id: SHA-256 of the exact serialised `TxBody` bytes that were signed."""
    return hashlib.sha256(body).digest()


def build_body(chain_id: str, sender: bytes, nonce: int, payload: Payload) -> types_pb2.TxBody:
    """A `TxBody` with `payload` placed in the right oneof field."""
    field = _PAYLOAD_FIELD.get(type(payload))
    if field is None:
        raise TypeError(f"not a transaction payload: {type(payload).__name__}")
    if len(sender) != KEY_LEN:
        raise ValueError(f"sender must be a {KEY_LEN}-byte public key, got {len(sender)} bytes")
    if not 0 <= nonce < 2**64:
        raise ValueError(f"nonce out of range: {nonce}")
    body = types_pb2.TxBody(chain_id=chain_id, sender=sender, nonce=nonce)
    getattr(body, field).CopyFrom(payload)
    return body


def verify_tx(tx: types_pb2.SignedTx) -> bool:
    """True iff `tx.signature` is a valid Ed25519 signature of `tx.body` by the body's sender."""
    try:
        body = types_pb2.TxBody.FromString(tx.body)
        VerifyKey(body.sender).verify(tx.body, tx.signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    except Exception:  # nacl/protobuf raise their own types for malformed input
        return False
    return True


class Signer:
    """An Ed25519 signing key (client identity); builds and signs transactions."""

    __slots__ = ("_key",)

    def __init__(self, key: SigningKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> Signer:
        return cls(SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Signer:
        if len(seed) != KEY_LEN:
            raise ValueError(f"Ed25519 seed must be {KEY_LEN} bytes, got {len(seed)}")
        return cls(SigningKey(seed))

    @property
    def public_key(self) -> bytes:
        return bytes(self._key.verify_key)

    @property
    def seed(self) -> bytes:
        return bytes(self._key)

    def sign(self, data: bytes) -> bytes:
        """Detached 64-byte Ed25519 signature of `data`."""
        return bytes(self._key.sign(data).signature)

    def build_tx(
        self, chain_id: str, nonce: int, payload: Payload
    ) -> tuple[bytes, types_pb2.SignedTx]:
        """Serialise the body once, sign those bytes; returns `(tx_id, SignedTx)`.
        `SignedTx.SerializeToString()` gives the wire bytes if needed."""
        body = build_body(chain_id, self.public_key, nonce, payload).SerializeToString()
        return tx_id_of(body), types_pb2.SignedTx(body=body, signature=self.sign(body))

    # key files ---------------------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps({"public_key": self.public_key.hex(), "private_key": self.seed.hex()})

    @classmethod
    def from_json(cls, text: str, source: str = "key file") -> Signer:
        try:
            data = json.loads(text)
            seed = bytes.fromhex(data["private_key"])
            signer = cls.from_seed(seed)
        except (ValueError, KeyError, TypeError) as e:
            raise KeyFileError(f"{source} is not a valid key file ({_one_line(str(e))})") from e
        public = data.get("public_key")
        if public is not None and public.lower() != signer.public_key.hex():
            raise KeyFileError(f"{source}: public_key does not match private_key")
        return signer

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Signer:
        p = Path(path)
        try:
            text = p.read_text()
        except FileNotFoundError:
            raise KeyFileError(
                f"key file {p} not found (create one with 'consortium keys new --out {p}')"
            ) from None
        except OSError as e:
            raise KeyFileError(f"cannot read key file {p}: {e.strerror or e}") from None
        return cls.from_json(text, f"key file {p}")

    def save(self, path: str | os.PathLike[str], *, force: bool = False) -> None:
        """Write the key file with mode 0600; refuses to overwrite unless `force`."""
        p = Path(path)
        if p.is_dir():
            raise KeyFileError(f"{p} is a directory")
        try:
            p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
            fd = os.open(p, flags, 0o600)
        except FileExistsError:
            raise KeyFileError(f"key file {p} already exists (use --force to overwrite)") from None
        except OSError as e:
            raise KeyFileError(f"cannot write key file {p}: {e.strerror or e}") from None
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(self.to_json() + "\n")


def parse_hex(value: str, what: str, length: int | None = None) -> bytes:
    """Hex (optionally 0x-prefixed) to bytes, with a readable ValueError."""
    text = value.strip()
    if text[:2].lower() == "0x":
        text = text[2:]
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{what} must be hex, got {value!r}") from None
    if length is not None and len(data) != length:
        raise ValueError(
            f"{what} must be {length} bytes ({2 * length} hex chars), got {len(data)} bytes"
        )
    return data


# --------------------------------------------------------------------------- governance


def gov_action(payload: Payload) -> types_pb2.GovAction:
    """Wrap a configuration-change message (AddOrganization, SetParam, ...) as a GovAction."""
    field = _PAYLOAD_FIELD.get(type(payload))
    if field is None or field not in types_pb2.GovAction.DESCRIPTOR.fields_by_name:
        raise TypeError(f"not a governance action: {type(payload).__name__}")
    action = types_pb2.GovAction()
    getattr(action, field).CopyFrom(payload)
    return action


@dataclass(frozen=True, slots=True)
class EndorsementFile:
    """A detached endorsement file for the offline path (`consortium gov sign`): one action
    (the exact serialised GovAction bytes), the (chain id, configuration sequence, expiry)
    it is valid for, and the endorsements collected so far. JSON, bytes as hex:
    {"chain_id", "action", "summary", "config_seq", "expiry", "endorsements": [{"signer",
    "signature"}]}. The signed bytes are ledger.governance.endorsement_message(...)."""

    chain_id: str
    action: bytes
    config_seq: int
    expiry: int
    summary: str = ""
    endorsements: tuple[tuple[bytes, bytes], ...] = ()

    def message(self) -> bytes:
        from .ledger.governance import endorsement_message

        return endorsement_message(self.chain_id, self.action, self.config_seq, self.expiry)

    def signed_by(self, signer: Signer) -> EndorsementFile:
        """This file plus `signer`'s endorsement (replacing an earlier one by the same key)."""
        rest = tuple(e for e in self.endorsements if e[0] != signer.public_key)
        ends = (*rest, (signer.public_key, signer.sign(self.message())))
        return EndorsementFile(
            self.chain_id, self.action, self.config_seq, self.expiry, self.summary, ends
        )

    def same_terms(self, other: EndorsementFile) -> bool:
        return (self.chain_id, self.action, self.config_seq, self.expiry) == (
            other.chain_id,
            other.action,
            other.config_seq,
            other.expiry,
        )

    def merged(self, other: EndorsementFile) -> EndorsementFile:
        if not self.same_terms(other):
            raise ClientError(
                "endorsement files differ in chain id, action, configuration sequence or expiry"
            )
        have = {k for k, _ in self.endorsements}
        extra = tuple(e for e in other.endorsements if e[0] not in have)
        return EndorsementFile(
            self.chain_id,
            self.action,
            self.config_seq,
            self.expiry,
            self.summary,
            (*self.endorsements, *extra),
        )

    def payload(self) -> types_pb2.SubmitEndorsed:
        return types_pb2.SubmitEndorsed(
            action=self.action,
            config_seq=self.config_seq,
            expiry=self.expiry,
            endorsements=[
                types_pb2.Endorsement(signer=k, signature=sig) for k, sig in self.endorsements
            ],
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "chain_id": self.chain_id,
                "action": self.action.hex(),
                "summary": self.summary,
                "config_seq": self.config_seq,
                "expiry": self.expiry,
                "endorsements": [
                    {"signer": k.hex(), "signature": sig.hex()} for k, sig in self.endorsements
                ],
            },
            indent=2,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EndorsementFile:
        p = Path(path)
        try:
            d = json.loads(p.read_text())
            return cls(
                str(d["chain_id"]),
                bytes.fromhex(d["action"]),
                int(d["config_seq"]),
                int(d["expiry"]),
                str(d.get("summary", "")),
                tuple(
                    (bytes.fromhex(e["signer"]), bytes.fromhex(e["signature"]))
                    for e in d.get("endorsements", [])
                ),
            )
        except OSError as e:
            raise ClientError(f"cannot read endorsement file {p}: {e.strerror}") from None
        except (ValueError, KeyError, TypeError) as e:
            raise ClientError(f"{p} is not an endorsement file ({_one_line(str(e))})") from None


# --------------------------------------------------------------------------- client


def _identity(b: bytes) -> bytes:
    return b


_FIELD1 = b"\x0a"  # field 1, wire type 2 (length-delimited): SubmitBatchRequest.txs


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Context:
    """One entry of the contexts file: where a cluster consortium is and how to talk to it."""

    name: str
    endpoint: str | None = None
    tls_dir: Path | None = None
    key: Path | None = None

    @classmethod
    def current(cls) -> Context | None:
        """The selected context ($CONSORTIUM_CONTEXT, else the file's `current`), or None
        when there is no contexts file. A named context that does not exist is an error."""
        import yaml

        path = Path(os.environ.get("CONSORTIUM_CONTEXTS") or DEFAULT_CONTEXTS).expanduser()
        wanted = os.environ.get("CONSORTIUM_CONTEXT")
        if not path.exists():
            if wanted:
                raise ClientError(f"context {wanted!r}: {path} does not exist")
            return None
        try:
            doc = yaml.safe_load(path.read_text()) or {}
            name = wanted or doc.get("current")
            if not name:
                return None
            entry = (doc.get("contexts") or {})[name]
        except KeyError:
            raise ClientError(f"no context {wanted or name!r} in {path}") from None
        except (OSError, yaml.YAMLError, AttributeError, TypeError) as e:
            raise ClientError(f"cannot read contexts file {path}: {_one_line(str(e))}") from None

        def rel(v: object) -> Path | None:
            return None if not v else (path.parent / str(v)).expanduser()

        return cls(
            str(name),
            str(entry["endpoint"]) if entry.get("endpoint") else None,
            rel(entry.get("tls_dir")),
            rel(entry.get("key")),
        )


@dataclass(frozen=True, slots=True)
class ClientTLS:
    """TLS material of a client: trusted CAs, and our certificate + key (needed to write).
    `server_name` overrides the name checked against the node's certificate."""

    ca_pem: bytes
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    server_name: str | None = None

    @classmethod
    def from_dir(cls, directory: str | os.PathLike[str]) -> ClientTLS:
        d = Path(directory)
        try:
            ca = (d / "ca.pem").read_bytes()
        except OSError as e:
            raise ClientError(f"TLS directory {d}: cannot read ca.pem ({e.strerror})") from None
        cert, key = d / "client.pem", d / "client.key"
        if cert.exists() != key.exists():
            raise ClientError(f"TLS directory {d}: client.pem and client.key go together")
        try:
            return cls(
                ca,
                cert.read_bytes() if cert.exists() else None,
                key.read_bytes() if key.exists() else None,
            )
        except OSError as e:
            raise ClientError(f"TLS directory {d}: {e.strerror}: {e.filename}") from None

    @classmethod
    def discover(cls, data_dir: str | os.PathLike[str] | None = None) -> ClientTLS | None:
        """The TLS material to use without explicit flags (see the module docstring)."""
        if data_dir is not None:
            return DataDir.load(data_dir).tls
        env = os.environ.get("CONSORTIUM_TLS_DIR")
        if env:
            return cls.from_dir(env)
        ctx = Context.current()
        if ctx is not None and ctx.tls_dir is not None:
            return cls.from_dir(ctx.tls_dir)
        home = DEFAULT_TLS_DIR.expanduser()
        return cls.from_dir(home) if (home / "ca.pem").exists() else None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.ca_pem, self.key_pem, self.cert_pem)


class Client:
    """Typed synchronous wrapper of the `Ledger` service of one node.

    Unary calls use `timeout` seconds as their deadline. Streaming calls have no deadline
    unless given. Every gRPC error becomes a `ClientError` (one line, names the node)."""

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        options: Sequence[tuple[str, Any]] = (),
        tls: ClientTLS | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.tls = tls
        opts: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.enable_http_proxy", 0),
            *options,
        ]
        if tls is None:
            self._channel = grpc.insecure_channel(endpoint, options=opts)
        else:
            if tls.server_name:
                opts.append(("grpc.ssl_target_name_override", tls.server_name))
            self._channel = grpc.secure_channel(endpoint, tls.credentials(), options=opts)
        self._stub = ledger_pb2_grpc.LedgerStub(self._channel)
        self._batch_raw = self._channel.unary_unary(
            "/consortium.v1.Ledger/SubmitBatch",
            request_serializer=_identity,
            response_deserializer=ledger_pb2.SubmitBatchResponse.FromString,
        )
        self._submit_raw = self._channel.stream_stream(
            "/consortium.v1.Ledger/SubmitStream",
            request_serializer=_identity,
            response_deserializer=ledger_pb2.TxResult.FromString,
        )

    # lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _error(self, err: grpc.RpcError, timeout: float | None) -> ClientError:
        e = translate_rpc_error(err, self.endpoint, timeout)
        if isinstance(e, NodeUnavailable) and "closed by the node" in str(e):
            # a TLS node drops a handshake without the client certificate it requires
            if self.tls is not None and self.tls.cert_pem is None:
                return NodeUnavailable(
                    f"{e} — it may require a client certificate: the TLS directory has "
                    "ca.pem but no client.pem/client.key",
                    e.code,
                )
            if self.tls is None:
                return NodeUnavailable(
                    f"{e} — if the node runs TLS, give its TLS directory (--tls-dir, "
                    "$CONSORTIUM_TLS_DIR or a context)",
                    e.code,
                )
        return e

    # unary RPCs ----------------------------------------------------------------------------

    def status(self, timeout: float | None = None) -> ledger_pb2.GetStatusResponse:
        t = timeout or self.timeout
        try:
            return self._stub.GetStatus(ledger_pb2.GetStatusRequest(), timeout=t)
        except grpc.RpcError as e:
            raise self._error(e, t) from None

    def submit(self, txs: Sequence[types_pb2.SignedTx]) -> list[ledger_pb2.TxResult]:
        """SubmitBatch: one `TxResult` per tx, same order (code 0 = admitted)."""
        try:
            resp = self._stub.SubmitBatch(
                ledger_pb2.SubmitBatchRequest(txs=list(txs)), timeout=self.timeout
            )
        except grpc.RpcError as e:
            raise self._error(e, self.timeout) from None
        return list(resp.results)

    def submit_raw(self, txs: Sequence[bytes]) -> list[ledger_pb2.TxResult]:
        """SubmitBatch of already-serialised `SignedTx` bytes (the request is assembled by
        concatenation, no per-tx protobuf work; used by `consortium bench`)."""
        request = b"".join(_FIELD1 + _varint(len(t)) + t for t in txs)
        try:
            resp = self._batch_raw(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise self._error(e, self.timeout) from None
        return list(resp.results)

    def get_block(self, by: int | bytes) -> types_pb2.Block:
        """Block by height (int) or by 32-byte hash (bytes)."""
        req = (
            ledger_pb2.GetBlockRequest(height=by)
            if isinstance(by, int)
            else ledger_pb2.GetBlockRequest(hash=by)
        )
        try:
            return self._stub.GetBlock(req, timeout=self.timeout)
        except grpc.RpcError as e:
            raise self._error(e, self.timeout) from None

    def get_tx(self, tx_id: bytes) -> ledger_pb2.GetTxResponse | None:
        """The committed tx with its receipt, inclusion proof and block header; None if the
        node does not know it (NOT_FOUND)."""
        try:
            return self._stub.GetTx(ledger_pb2.GetTxRequest(tx_id=tx_id), timeout=self.timeout)
        except grpc.RpcError as e:
            if _code_of(e) is grpc.StatusCode.NOT_FOUND:
                return None
            raise self._error(e, self.timeout) from None

    def wait_tx(self, tx_id: bytes, timeout: float = 30.0) -> ledger_pb2.GetTxResponse:
        """Block until the tx is committed (WaitTx); ClientError(DEADLINE_EXCEEDED) after
        `timeout` seconds."""
        try:
            return self._stub.WaitTx(ledger_pb2.GetTxRequest(tx_id=tx_id), timeout=timeout)
        except grpc.RpcError as e:
            if _code_of(e) is grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ClientError(
                    f"tx {tx_id.hex()} not committed within {timeout:g}s",
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ) from None
            raise self._error(e, timeout) from None

    # governance --------------------------------------------------------------------------

    def list_proposals(
        self, open_only: bool = False, limit: int = 0
    ) -> ledger_pb2.ListProposalsResponse:
        """Proposals, newest first, with their votes and state."""
        req = ledger_pb2.ListProposalsRequest(open_only=open_only, limit=limit)
        try:
            return self._stub.ListProposals(req, timeout=self.timeout)
        except grpc.RpcError as e:
            raise self._error(e, self.timeout) from None

    def get_proposal(self, pid: int) -> types_pb2.Proposal:
        """One proposal; ClientError "unknown proposal N" if the chain has none by that id."""
        try:
            return self._stub.GetProposal(
                ledger_pb2.GetProposalRequest(id=pid), timeout=self.timeout
            )
        except grpc.RpcError as e:
            if _code_of(e) is grpc.StatusCode.NOT_FOUND:
                raise ClientError(f"unknown proposal {pid}", grpc.StatusCode.NOT_FOUND) from None
            raise self._error(e, self.timeout) from None

    def governance(self) -> ledger_pb2.GetGovernanceResponse:
        """Mode, configuration sequence, policies and organisation admins."""
        try:
            return self._stub.GetGovernance(ledger_pb2.GetGovernanceRequest(), timeout=self.timeout)
        except grpc.RpcError as e:
            raise self._error(e, self.timeout) from None

    def query(self, req: ledger_pb2.QueryStateRequest) -> ledger_pb2.QueryStateResponse:
        try:
            return self._stub.QueryState(req, timeout=self.timeout)
        except grpc.RpcError as e:
            raise self._error(e, self.timeout) from None

    def query_key(self, key: bytes) -> ledger_pb2.QueryStateResponse:
        """Raw key/value entry; `.found`, `.value`, `.height` (the height it was read at)."""
        return self.query(ledger_pb2.QueryStateRequest(key=key))

    def balance(self, asset: str, account: bytes) -> int:
        req = ledger_pb2.QueryStateRequest(
            balance=ledger_pb2.QueryStateRequest.Balance(asset=asset, account=account)
        )
        return int(self.query(req).amount)

    def next_nonce(self, sender: bytes) -> int:
        return int(self.query(ledger_pb2.QueryStateRequest(nonce_of=sender)).amount)

    # streaming RPCs ------------------------------------------------------------------------

    def submit_stream(
        self, txs: Iterable[types_pb2.SignedTx], timeout: float | None = None
    ) -> Iterator[ledger_pb2.TxResult]:
        """SubmitStream: yields one `TxResult` per tx sent, in order."""
        try:
            yield from self._stub.SubmitStream(iter(txs), timeout=timeout)
        except grpc.RpcError as e:
            raise self._error(e, timeout) from None

    def submit_stream_raw(
        self, txs: Iterable[bytes], timeout: float | None = None
    ) -> Iterator[ledger_pb2.TxResult]:
        """Like `submit_stream`, but takes already-serialised `SignedTx` bytes (no per-tx
        serialisation on the hot path; used by `consortium bench`)."""
        try:
            yield from self._submit_raw(iter(txs), timeout=timeout)
        except grpc.RpcError as e:
            raise self._error(e, timeout) from None

    def stream_blocks(
        self,
        from_height: int = 1,
        *,
        follow: bool = False,
        ids_only: bool = False,
        headers_only: bool = False,
        timeout: float | None = None,
    ) -> Iterator[types_pb2.Block]:
        """Blocks from `from_height` on; with `follow`, keeps yielding new blocks as they
        commit. `ids_only` fills `Block.tx_ids` instead of `Block.txs`."""
        req = ledger_pb2.StreamBlocksRequest(
            from_height=from_height, follow=follow, ids_only=ids_only, headers_only=headers_only
        )
        call = self._stub.StreamBlocks(req, timeout=timeout)
        try:
            yield from call
        except grpc.RpcError as e:
            if _code_of(e) is grpc.StatusCode.CANCELLED:
                return
            raise self._error(e, timeout) from None
        finally:
            call.cancel()  # type: ignore[no-untyped-call]


# --------------------------------------------------------------------------- data dirs


@dataclass(frozen=True, slots=True)
class NodeEntry:
    name: str
    organization: str
    endpoint: str
    pid: int | None
    node_id: str


@dataclass(frozen=True, slots=True)
class DataDir:
    """`DIR/endpoints.json` as written by `consortium up`."""

    path: Path
    chain_id: str
    consensus: str
    nodes: tuple[NodeEntry, ...]
    client_key: Path | None
    tls: ClientTLS | None = None
    admin_key: Path | None = None

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> DataDir:
        d = Path(directory)
        f = d / "endpoints.json"
        try:
            data = json.loads(f.read_text())
        except FileNotFoundError:
            raise ClientError(
                f"{f} not found (is 'consortium up --data-dir {d}' running?)"
            ) from None
        except (OSError, ValueError) as e:
            raise ClientError(f"cannot read {f}: {_one_line(str(e))}") from None
        try:
            nodes = tuple(
                NodeEntry(
                    name=str(n["name"]),
                    organization=str(n.get("organization", "")),
                    endpoint=str(n["endpoint"]),
                    pid=int(n["pid"]) if n.get("pid") is not None else None,
                    node_id=str(n.get("node_id", "")),
                )
                for n in data["nodes"]
            )
            key = data.get("client_key")
            tls_dir = data.get("tls_dir")
            tls = ClientTLS.from_dir(d / tls_dir) if tls_dir else None
            return cls(
                path=d,
                chain_id=str(data.get("chain_id", "")),
                consensus=str(data.get("consensus", "")),
                nodes=nodes,
                client_key=(d / key) if key else None,
                tls=tls,
                admin_key=(d / data["admin_key"]) if data.get("admin_key") else None,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ClientError(f"{f} is malformed ({_one_line(repr(e))})") from None

    def node(self, name: str) -> NodeEntry:
        for n in self.nodes:
            if n.name == name:
                return n
        known = ", ".join(n.name for n in self.nodes) or "none"
        raise ClientError(f"no node named {name!r} in {self.path / 'endpoints.json'} ({known})")


def connect(
    endpoint: str | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    node: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    tls: ClientTLS | None = None,
) -> Client:
    """A `Client` for `endpoint`, or for the named / first answering node of `data_dir`.
    Without either: $CONSORTIUM_ENDPOINT or 127.0.0.1:7050. Does not probe a plain endpoint.
    `tls` None: found as `ClientTLS.discover` does."""
    if tls is None:
        tls = ClientTLS.discover(data_dir)
    if endpoint:
        return Client(endpoint, timeout, tls=tls)
    if data_dir is None:
        ep = os.environ.get("CONSORTIUM_ENDPOINT")
        if not ep:
            ctx = Context.current()
            ep = ctx.endpoint if ctx is not None else None
        return Client(ep or DEFAULT_ENDPOINT, timeout, tls=tls)
    dd = DataDir.load(data_dir)
    if node is not None:
        return Client(dd.node(node).endpoint, timeout, tls=tls)
    if not dd.nodes:
        raise ClientError(f"{dd.path / 'endpoints.json'} lists no nodes")
    tried: list[str] = []
    probe = min(timeout, 2.0)
    for n in dd.nodes:
        c = Client(n.endpoint, timeout, tls=tls)
        try:
            c.status(timeout=probe)
        except ClientError as e:
            c.close()
            tried.append(f"{n.name} {n.endpoint}: {_short_reason(e)}")
            continue
        return c
    raise NodeUnavailable(f"no node of {dd.path} answers ({'; '.join(tried)})")


def _short_reason(e: ClientError) -> str:
    m = re.search(r"\(([^()]*)\)$", e.message)
    return m.group(1) if m else e.message
