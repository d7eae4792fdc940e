"""How the client finds its TLS material and node without flags (client/discovery.py): the data dir's
tls/ (consortium up), $CONSORTIUM_TLS_DIR / --tls-dir, a kubeconfig-style contexts file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from consortium_node.client.discovery import ClientTLS, Context, DataDir
from consortium_node.client.errors import ClientError
from consortium_node.client.rpc import connect

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for v in ("CONSORTIUM_TLS_DIR", "CONSORTIUM_CONTEXT", "CONSORTIUM_ENDPOINT", "CONSORTIUM_KEY"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("CONSORTIUM_CONTEXTS", str(tmp_path / "none.yaml"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _tls_dir(d: Path, client: bool = True) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "ca.pem").write_bytes(b"CA")
    if client:
        (d / "client.pem").write_bytes(b"CERT")
        (d / "client.key").write_bytes(b"KEY")
    return d


def test_plaintext_without_any_tls_material() -> None:
    assert ClientTLS.discover() is None


def test_data_dir_brings_its_tls(tmp_path: Path) -> None:
    _tls_dir(tmp_path / "tls")
    (tmp_path / "endpoints.json").write_text(
        json.dumps({"chain_id": "c", "tls_dir": "tls", "nodes": [], "admin_key": "keys/a.json"})
    )
    dd = DataDir.load(tmp_path)
    assert dd.tls == ClientTLS(b"CA", b"CERT", b"KEY")
    assert dd.admin_key == tmp_path / "keys/a.json"
    assert ClientTLS.discover(tmp_path) == dd.tls


def test_env_tls_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSORTIUM_TLS_DIR", str(_tls_dir(tmp_path / "t", client=False)))
    assert ClientTLS.discover() == ClientTLS(b"CA")


def test_half_a_client_pair_is_an_error(tmp_path: Path) -> None:
    d = _tls_dir(tmp_path / "t", client=False)
    (d / "client.pem").write_bytes(b"CERT")
    with pytest.raises(ClientError, match="go together"):
        ClientTLS.from_dir(d)


def test_context_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tls_dir(tmp_path / "prod-tls")
    f = tmp_path / "contexts.yaml"
    f.write_text(
        yaml.safe_dump(
            {
                "current": "prod",
                "contexts": {
                    "prod": {
                        "endpoint": "chain.example:7050",
                        "tls_dir": "prod-tls",
                        "key": "k.json",
                    },
                    "dev": {"endpoint": "127.0.0.1:7050"},
                },
            }
        )
    )
    monkeypatch.setenv("CONSORTIUM_CONTEXTS", str(f))
    ctx = Context.current()
    assert ctx == Context("prod", "chain.example:7050", tmp_path / "prod-tls", tmp_path / "k.json")
    assert ClientTLS.discover() == ClientTLS(b"CA", b"CERT", b"KEY")
    with connect(timeout=1.0) as c:
        assert c.endpoint == "chain.example:7050" and c.tls is not None
    monkeypatch.setenv("CONSORTIUM_CONTEXT", "dev")
    assert ClientTLS.discover() is None
    monkeypatch.setenv("CONSORTIUM_CONTEXT", "nope")
    with pytest.raises(ClientError, match="no context"):
        Context.current()
