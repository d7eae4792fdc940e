"""`consortium context`: contexts written from TLS material (what `from-cluster` copies out of
the operator's client Secret), picked up by `Context.current` / `ClientTLS.discover` with no
flags, switched with `use`, and one-line errors for a broken Secret, unknown names and a
missing kubeconfig. The real-Secret path runs in tests/integration/operator."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
import yaml
from consortium_node import pki
from consortium_node.cli.app import app
from consortium_node.cli.context import save_context
from consortium_node.client.discovery import ClientTLS, Context
from consortium_node.client.errors import ClientError
from typer.testing import CliRunner

pytestmark = pytest.mark.unit

runner = CliRunner()


@pytest.fixture
def contexts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home" / "contexts.yaml"
    monkeypatch.setenv("CONSORTIUM_CONTEXTS", str(path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("CONSORTIUM_TLS_DIR", "CONSORTIUM_CONTEXT", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(var, raising=False)
    return path


def tls_files() -> dict[str, bytes]:
    now = dt.datetime.now(dt.UTC)
    ca = pki.new_ca("acme", now, pki.new_private_key(), 1)
    client = pki.issue_client_cert(ca, "acme", "acme-client", now, pki.new_private_key(), 2)
    return {"ca.pem": ca.cert_pem, "client.pem": client.cert_pem, "client.key": client.key_pem}


def test_saved_context_is_found_without_flags(contexts: Path) -> None:
    files = tls_files()
    tls_dir = save_context("prod", "demo-client.chains.svc:7050", files)
    assert tls_dir == contexts.parent / "contexts" / "prod"
    assert (tls_dir / "client.key").stat().st_mode & 0o777 == 0o600
    assert contexts.stat().st_mode & 0o077 == 0
    doc = yaml.safe_load(contexts.read_text())
    assert doc["current"] == "prod"
    assert doc["contexts"]["prod"] == {
        "endpoint": "demo-client.chains.svc:7050",
        "tls_dir": "contexts/prod",  # relative to the file: the directory can move
    }
    ctx = Context.current()
    assert ctx is not None and ctx.name == "prod" and ctx.endpoint == "demo-client.chains.svc:7050"
    found = ClientTLS.discover()
    assert found is not None and found.cert_pem == files["client.pem"]
    assert found.key_pem == files["client.key"] and found.ca_pem == files["ca.pem"]


def test_use_and_list(contexts: Path) -> None:
    save_context("a", "a:7050", tls_files())
    save_context("b", "b:7050", tls_files(), make_current=False)
    r = runner.invoke(app, ["context", "list"])
    assert r.exit_code == 0 and r.stdout.splitlines() == ["* a\ta:7050", "  b\tb:7050"]
    r = runner.invoke(app, ["context", "use", "b"])
    assert r.exit_code == 0 and yaml.safe_load(contexts.read_text())["current"] == "b"
    r = runner.invoke(app, ["context", "use", "nope"])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "no context 'nope'" in r.stderr
    assert yaml.safe_load(contexts.read_text())["current"] == "b"  # unchanged


def test_incomplete_secret_replaces_nothing(contexts: Path) -> None:
    save_context("prod", "x:7050", tls_files())
    before = contexts.read_text()
    files = tls_files()
    del files["client.key"]
    with pytest.raises(ClientError, match=r"lacks client\.key"):
        save_context("prod", "y:7050", files)
    assert contexts.read_text() == before
    with pytest.raises(ClientError, match="plain name"):
        save_context("../evil", "y:7050", tls_files())


def test_from_cluster_without_kubeconfig_is_one_line(
    contexts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    r = runner.invoke(
        app, ["context", "from-cluster", "prod", "--consortium", "demo", "--org", "acme"]
    )
    assert r.exit_code == 1, r.output
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
    assert not contexts.exists()
    assert os.environ.get("CONSORTIUM_TLS_DIR") is None


def test_a_member_key_in_the_secret_becomes_the_context_s_signing_key(contexts: Path) -> None:
    """Issue 20: the organisation's client Secret carries the member key the operator vouched
    for (key.json, spec memberKey): the context signs with it, no --key, no ~/.consortium/
    key.json — what makes `consortium tx put greeting hello --wait` work for a cluster user."""
    from consortium_node.cli.common import load_signer
    from consortium_node.client.keys import Signer

    member = Signer.generate()
    files = {**tls_files(), "key.json": member.to_json().encode()}
    tls_dir = save_context("prod", "demo-client.chains.svc:7050", files)
    assert (tls_dir / "key.json").stat().st_mode & 0o777 == 0o600
    doc = yaml.safe_load(contexts.read_text())
    assert doc["contexts"]["prod"]["key"] == "contexts/prod/key.json"  # relative, movable
    assert load_signer(None, None).public_key == member.public_key
    # an explicit --key wins over the Secret's member key
    mine = contexts.parent / "mine.json"
    other = Signer.generate()
    mine.write_text(other.to_json())
    save_context("own", "demo-client.chains.svc:7050", files, mine)
    assert load_signer(None, None).public_key == other.public_key
    # a damaged member key writes nothing and says so in one line
    with pytest.raises(ClientError, match=r"key\.json is not a key file"):
        save_context("bad", "x:7050", {**files, "key.json": b"{not json"})
    assert "bad" not in yaml.safe_load(contexts.read_text())["contexts"]
    assert not (contexts.parent / "contexts" / "bad").exists()
