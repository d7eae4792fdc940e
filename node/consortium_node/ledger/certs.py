"""The one check of an organisation's CA bundle as chain state holds it (AddOrganization,
SetOrganizationCA, genesis): every PEM block is a certificate that parses, is a CA
(basicConstraints CA=true) and may sign certificates (keyUsage keyCertSign, when the extension
is present); no other PEM block (a private key!) and no bytes outside the blocks.

Pure and deterministic (the `cryptography` parser on the given bytes, no clock: expiry is
the handshake's business, not chain state's), so every node decides the same. Called at
admission (ledger.tx.check_stateless), at execution (ledger.state) and by transport.tls, which
drops a bundle that fails it instead of handing it to gRPC (a node must never become
unstartable because of committed state)."""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)
MAX_CAS = 8  # certificates per bundle (an organisation rotating its CA lists two)


def ca_bundle_problem(pem: bytes) -> str | None:
    """Why `pem` is not a valid CA bundle, or None. Empty is the caller's rule (allowed on a
    chain without TLS)."""
    blocks = list(_BLOCK.finditer(pem))
    if not blocks:
        return "CA certificate must be PEM"
    rest = _BLOCK.sub(b"", pem)
    if rest.strip():
        return "CA bundle has bytes outside its PEM blocks"
    if len(blocks) > MAX_CAS:
        return f"CA bundle has {len(blocks)} certificates, at most {MAX_CAS}"
    for i, block in enumerate(blocks, 1):
        kind = block.group(1).decode()
        if "PRIVATE KEY" in kind:
            return "CA certificate must not contain a private key"
        if kind != "CERTIFICATE":
            return f"PEM block {i} is a {kind}, not a CERTIFICATE"
        try:
            cert = x509.load_pem_x509_certificate(block.group(0))
        except ValueError:
            return f"PEM block {i} is not a parsable X.509 certificate"
        try:
            bc = cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
        except x509.ExtensionNotFound:
            return f"certificate {i} has no basicConstraints: not a CA"
        except ValueError:
            return f"certificate {i} has malformed extensions"
        if not isinstance(bc, x509.BasicConstraints) or not bc.ca:
            return f"certificate {i} is not a CA (basicConstraints CA=false)"
        try:
            ku = cert.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE).value
        except x509.ExtensionNotFound:
            ku = None
        if isinstance(ku, x509.KeyUsage) and not ku.key_cert_sign:
            return f"certificate {i} may not sign certificates (keyUsage lacks keyCertSign)"
    return None
