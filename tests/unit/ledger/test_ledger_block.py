"""Block header fixed encoding, block/certificate encoding, and decode robustness (ledger/block.py).

Decoding is fed untrusted bytes (peers, disk): whatever the input it returns a block or raises
`DecodeError`, never anything else."""

from __future__ import annotations

import contextlib
import hashlib
import random
import struct
from dataclasses import replace

import pytest
from consortium_node.ledger.block import (
    HEADER_LEN,
    HEADER_VERSION,
    Block,
    BlockHeader,
    CommitCertificate,
    commit_sign_bytes,
    tx_root,
)
from consortium_node.ledger.errors import DecodeError
from consortium_node.ledger.hashing import merkle_root

pytestmark = pytest.mark.unit

U64_MAX = (1 << 64) - 1


def make_header(rng: random.Random, height: int | None = None) -> BlockHeader:
    return BlockHeader(
        height=rng.randrange(1, 1 << 40) if height is None else height,
        time_ms=rng.randrange(0, 1 << 45),
        prev_hash=rng.randbytes(32),
        tx_root=rng.randbytes(32),
        state_root=rng.randbytes(32),
        validators_hash=rng.randbytes(32),
        proposer=rng.randbytes(32),
    )


def make_cert(rng: random.Random, block_hash: bytes, nsigs: int) -> CommitCertificate:
    return CommitCertificate(
        height=rng.randrange(1 << 30),
        round=rng.randrange(1 << 10),
        block_hash=block_hash,
        signatures=tuple((rng.randbytes(32), rng.randbytes(64)) for _ in range(nsigs)),
    )


def make_block(rng: random.Random, *, ntx: int, cert: bool) -> Block:
    h = make_header(rng)
    txs = tuple(rng.randbytes(rng.randrange(0, 300)) for _ in range(ntx))
    b = Block(h, txs)
    if cert:
        b = b.with_certificate(make_cert(rng, h.hash, rng.randrange(0, 5)))
    return b


# -- header -------------------------------------------------------------------------------


def test_header_layout_is_fixed_178_bytes_big_endian() -> None:
    h = BlockHeader(
        height=0x0102030405060708,
        time_ms=0x1112131415161718,
        prev_hash=b"\xa1" * 32,
        tx_root=b"\xa2" * 32,
        state_root=b"\xa3" * 32,
        validators_hash=b"\xa4" * 32,
        proposer=b"\xa5" * 32,
    )
    enc = h.encode()
    assert HEADER_LEN == 178 == len(enc)
    assert enc[:2] == struct.pack(">H", HEADER_VERSION) == b"\x00\x01"
    assert enc[2:10] == bytes.fromhex("0102030405060708")
    assert enc[10:18] == bytes.fromhex("1112131415161718")
    for i, fill in enumerate((0xA1, 0xA2, 0xA3, 0xA4, 0xA5)):
        assert enc[18 + 32 * i : 50 + 32 * i] == bytes([fill]) * 32
    assert h.hash == hashlib.sha256(enc).digest()


@pytest.mark.parametrize("seed", range(10), ids=lambda s: f"seed={s}")
def test_header_round_trip(seed: int) -> None:
    h = make_header(random.Random(seed))
    enc = h.encode()
    assert len(enc) == HEADER_LEN
    back = BlockHeader.decode(enc)
    assert back == h
    assert back.encode() == enc
    assert back.hash == h.hash == hashlib.sha256(enc).digest()


def test_header_extreme_values_round_trip() -> None:
    h = BlockHeader(U64_MAX, U64_MAX, b"\xff" * 32, bytes(32), b"\xff" * 32, bytes(32), bytes(32))
    assert BlockHeader.decode(h.encode()) == h
    z = BlockHeader(0, 0, bytes(32), bytes(32), bytes(32), bytes(32), bytes(32))
    assert BlockHeader.decode(z.encode()) == z


def test_header_hash_covers_every_field() -> None:
    base = make_header(random.Random(1))
    variants = [
        replace(base, prev_hash=bytes(32)),
        replace(base, tx_root=bytes(32)),
        replace(base, state_root=bytes(32)),
        replace(base, validators_hash=bytes(32)),
        replace(base, proposer=bytes(32)),
        replace(base, height=base.height + 1),
        replace(base, time_ms=base.time_ms + 1),
    ]
    assert len({base.hash, *(v.hash for v in variants)}) == 8


@pytest.mark.parametrize("length", [0, 1, HEADER_LEN - 1, HEADER_LEN + 1, 2 * HEADER_LEN])
def test_header_decode_rejects_wrong_length(length: int) -> None:
    with pytest.raises(DecodeError, match="178"):
        BlockHeader.decode(b"\x00\x01" + bytes(length - 2) if length >= 2 else bytes(length))


@pytest.mark.parametrize("version", [0, 2, 0xFFFF])
def test_header_decode_rejects_other_versions(version: int) -> None:
    enc = bytearray(make_header(random.Random(version)).encode())
    enc[0:2] = struct.pack(">H", version)
    with pytest.raises(DecodeError, match="version"):
        BlockHeader.decode(bytes(enc))


# -- certificate and sign bytes ------------------------------------------------------------


@pytest.mark.parametrize("nsigs", [0, 1, 4, 7])
def test_certificate_round_trip(nsigs: int) -> None:
    rng = random.Random(nsigs)
    c = make_cert(rng, rng.randbytes(32), nsigs)
    enc = c.encode()
    assert len(enc) == 8 + 8 + 32 + 4 + 96 * nsigs
    assert CommitCertificate.decode(enc) == c
    with pytest.raises(DecodeError):
        CommitCertificate.decode(enc + b"\x00")
    with pytest.raises(DecodeError):
        CommitCertificate.decode(enc[:-1])


def test_commit_sign_bytes_are_domain_separated() -> None:
    bh = bytes(range(32))
    a = commit_sign_bytes("chain-a", 5, 0, bh)
    assert a.startswith(b"consortium/commit/v1")
    assert a != commit_sign_bytes("chain-b", 5, 0, bh)
    assert a != commit_sign_bytes("chain-a", 6, 0, bh)
    assert a != commit_sign_bytes("chain-a", 5, 1, bh)
    assert a != commit_sign_bytes("chain-a", 5, 0, bytes(32))
    # the chain id is length-prefixed: no ambiguity between id and height bytes
    assert commit_sign_bytes("ab", 5, 0, bh) != commit_sign_bytes("a", 5, 0, bh)


# -- block ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ntx", [0, 1, 5, 64])
@pytest.mark.parametrize("cert", [False, True], ids=["nocert", "cert"])
def test_block_round_trip(ntx: int, cert: bool) -> None:
    b = make_block(random.Random(ntx * 2 + cert), ntx=ntx, cert=cert)
    enc = b.encode()
    back = Block.decode(enc)
    assert back == b
    assert back.header == b.header
    assert back.txs == b.txs
    assert back.certificate == b.certificate
    assert (back.certificate is None) == (not cert)
    assert back.encode() == enc
    assert back.hash == b.hash == b.header.hash
    assert back.height == b.header.height


def test_block_layout() -> None:
    h = make_header(random.Random(3))
    b = Block(h, (b"ab", b""))
    enc = b.encode()
    assert enc == h.encode() + b"\x00\x00\x00\x02" + b"\x00\x00\x00\x02ab" + bytes(4) + bytes(4)


def test_with_certificate_keeps_hash_and_content() -> None:
    rng = random.Random(9)
    b = make_block(rng, ntx=3, cert=False)
    c = make_cert(rng, b.hash, 2)
    bc = b.with_certificate(c)
    assert bc.hash == b.hash
    assert bc.certificate == c
    assert bc.txs == b.txs and bc.header == b.header
    assert b.certificate is None  # the original is unchanged (frozen)


def test_empty_certificate_length_means_none() -> None:
    b = make_block(random.Random(4), ntx=2, cert=False)
    assert b.encode().endswith(bytes(4))
    assert Block.decode(b.encode()).certificate is None


def test_tx_root_is_merkle_root_of_ids() -> None:
    ids = [hashlib.sha256(bytes([i])).digest() for i in range(7)]
    assert tx_root(ids) == merkle_root(ids)
    assert tx_root([]) == hashlib.sha256(b"").digest()


@pytest.mark.parametrize("cert", [False, True], ids=["nocert", "cert"])
def test_every_truncation_and_extension_is_a_decode_error(cert: bool) -> None:
    enc = make_block(random.Random(11), ntx=4, cert=cert).encode()
    for cut in range(len(enc)):
        with pytest.raises(DecodeError):
            Block.decode(enc[:cut])
    for extra in (b"\x00", b"\xff" * 3, bytes(100)):
        with pytest.raises(DecodeError, match="trailing"):
            Block.decode(enc + extra)


def test_huge_counts_and_lengths_are_decode_errors() -> None:
    h = make_header(random.Random(12)).encode()
    for tail in (
        b"\xff\xff\xff\xff",  # 4 billion txs, no bytes
        b"\x00\x00\x00\x01\xff\xff\xff\xff",  # one tx of 4 GiB
        b"\x00\x00\x00\x00\xff\xff\xff\xff",  # certificate of 4 GiB
        b"\x00\x00\x00\x00\x00\x00\x00\x10" + bytes(16),  # certificate too short for its fields
    ):
        with pytest.raises(DecodeError):
            Block.decode(h + tail)


@pytest.mark.parametrize("seed", range(8), ids=lambda s: f"seed={s}")
def test_fuzz_mutations_never_raise_anything_but_decode_error(seed: int) -> None:
    rng = random.Random(seed)
    blocks = [make_block(rng, ntx=rng.randrange(0, 6), cert=rng.random() < 0.5) for _ in range(4)]
    for _ in range(400):
        enc = bytearray(rng.choice(blocks).encode())
        op = rng.randrange(4)
        if op == 0:  # truncate
            enc = enc[: rng.randrange(len(enc))]
        elif op == 1:  # flip bits
            for _ in range(rng.randrange(1, 4)):
                i = rng.randrange(len(enc))
                enc[i] ^= 1 << rng.randrange(8)
        elif op == 2:  # overwrite a window with random bytes
            i = rng.randrange(len(enc))
            n = rng.randrange(1, 9)
            enc[i : i + n] = rng.randbytes(n)
        else:  # splice in random bytes
            i = rng.randrange(len(enc) + 1)
            enc[i:i] = rng.randbytes(rng.randrange(1, 9))
        try:
            back = Block.decode(bytes(enc))
        except DecodeError:
            continue
        # whatever decodes re-encodes to exactly the input (the encoding is canonical)
        assert back.encode() == bytes(enc)


@pytest.mark.parametrize("seed", range(3), ids=lambda s: f"seed={s}")
def test_fuzz_random_bytes(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        data = rng.randbytes(rng.randrange(0, 400))
        if rng.random() < 0.5 and len(data) >= 2:
            data = b"\x00\x01" + data[2:]  # a valid version more often gets past the header
        with contextlib.suppress(DecodeError):
            Block.decode(data)
