"""Governance as a client builds it: a configuration change wrapped as the `GovAction` a
proposal or endorsement carries, and the detached endorsement file of the offline path.

The bytes an endorsement signs are `ledger.governance.endorsement_message` (pure, the one
function every node checks with); the client room imports only `crypto` of the node, so the
caller (the CLI) computes them and hands them to `signed_by`. Used by the CLI (`consortium
gov`) and tests."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from consortium_api.v1 import types_pb2

from .errors import ClientError, one_line
from .keys import Signer
from .tx import _PAYLOAD_FIELD, Payload


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

    def terms(self) -> tuple[str, bytes, int, int]:
        """(chain id, action bytes, configuration sequence, expiry): what is endorsed."""
        return self.chain_id, self.action, self.config_seq, self.expiry

    def signed_by(self, signer: Signer, message: bytes) -> EndorsementFile:
        """This file plus `signer`'s endorsement of `message` =
        ledger.governance.endorsement_message(*self.terms()) (replacing an earlier one by
        the same key)."""
        rest = tuple(e for e in self.endorsements if e[0] != signer.public_key)
        ends = (*rest, (signer.public_key, signer.sign(message)))
        return EndorsementFile(
            self.chain_id, self.action, self.config_seq, self.expiry, self.summary, ends
        )

    def same_terms(self, other: EndorsementFile) -> bool:
        return self.terms() == other.terms()

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
            raise ClientError(f"{p} is not an endorsement file ({one_line(str(e))})") from None
