"""Node config `tls`, `public_listen`, `health_listen` (config.py) and the CertStore that
reloads certificates from disk (transport/tls.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from consortium_node import pki
from consortium_node.config import ConfigError, NodeConfig
from consortium_node.transport.tls import CertStore, TlsError

pytestmark = pytest.mark.unit

BASE = {"data_dir": "d", "key_file": "k.json", "genesis_file": "g.json"}


def test_tls_is_off_unless_configured_and_round_trips(tmp_path: Path) -> None:
    assert NodeConfig.from_dict(dict(BASE), tmp_path).tls is None
    assert NodeConfig.from_dict({**BASE, "tls": False}, tmp_path).tls is None
    cfg = NodeConfig.from_dict(
        {**BASE, "tls": {"cert_file": "t/n.pem", "key_file": "t/n.key"}, "public_listen": "h:1"},
        tmp_path,
    )
    assert cfg.tls is not None and cfg.tls.cert_file == tmp_path / "t/n.pem"
    assert NodeConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "tls",
    [True, "yes", {"cert_file": "a"}, {"cert_file": "a", "key_file": "b", "extra": 1}],
)
def test_bad_tls_sections(tmp_path: Path, tls: object) -> None:
    with pytest.raises(ConfigError):
        NodeConfig.from_dict({**BASE, "tls": tls}, tmp_path)


def test_public_reads_need_tls(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="public_listen"):
        NodeConfig.from_dict({**BASE, "public_listen": "h:1"}, tmp_path)


def _write(d: Path, ca: pki.Issued, days: int) -> None:
    now = dt.datetime.now(dt.UTC)
    issued = pki.issue_node_cert(
        ca, "o", "n", b"\x01" * 32, now, pki.new_private_key(), 5, days=days
    )
    (d / "n.key").write_bytes(issued.key_pem)
    (d / "n.pem").write_bytes(issued.cert_pem)


def test_cert_store_reloads_changed_files_and_ignores_broken_ones(tmp_path: Path) -> None:
    ca = pki.new_ca("o", dt.datetime.now(dt.UTC), pki.new_private_key(), 1)
    _write(tmp_path, ca, 90)
    store = CertStore(tmp_path / "n.pem", tmp_path / "n.key", {"o": ca.cert_pem})
    first = store.material.not_after
    assert not store.poll() and store.version == 1
    _write(tmp_path, ca, 30)
    assert store.poll() and store.version == 2 and store.material.not_after < first
    (tmp_path / "n.key").write_bytes(pki.key_pem(pki.new_private_key()))  # half-rotated
    assert not store.poll() and store.version == 2
    assert set(store.ca_expiry()) == {"o"}


def test_cert_store_needs_roots_and_a_matching_pair(tmp_path: Path) -> None:
    ca = pki.new_ca("o", dt.datetime.now(dt.UTC), pki.new_private_key(), 1)
    _write(tmp_path, ca, 90)
    with pytest.raises(TlsError, match="CA"):
        CertStore(tmp_path / "n.pem", tmp_path / "n.key", {})
    (tmp_path / "n.key").write_bytes(pki.key_pem(pki.new_private_key()))
    with pytest.raises(TlsError, match="not the private key"):
        CertStore(tmp_path / "n.pem", tmp_path / "n.key", {"o": ca.cert_pem})
    with pytest.raises(TlsError, match="cannot read"):
        CertStore(tmp_path / "x.pem", tmp_path / "n.key", {"o": ca.cert_pem})
