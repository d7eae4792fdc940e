"""`consortium ceremony` and `consortium up --org` without node processes: the walkthrough's
files from organisation directories, each refusal one `error:` line (exit 1), and the node's
start-up check of a genesis by reference (runtime.service.check_genesis_reference)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from consortium_node.cli import app
from consortium_node.config import ConfigError, NodeConfig
from consortium_node.provision import ceremony as cer
from consortium_node.runtime.service import check_genesis_reference
from typer.testing import CliRunner, Result

pytestmark = pytest.mark.unit
runner = CliRunner()
ORGS = ("org1", "org2", "org3")


def ok(*args: str) -> Result:
    r = runner.invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r


def one_error(*args: str) -> str:
    r = runner.invoke(app, list(args))
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), r.output
    return lines[0]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three organisation directories, their contributions, the genesis and its signatures."""
    root = tmp_path_factory.mktemp("ceremony")
    f = root / "fed"
    ok(
        "ceremony",
        "init",
        "--chain-id",
        "c1",
        "-c",
        "raft",
        *(x for o in ORGS for x in ("--org", o)),
        "--genesis-time",
        "1767225600",
        "-o",
        str(f / "ceremony.json"),
    )
    for o in ORGS:
        ok("up", "--org", o, "-d", str(root / o), "--ceremony-init", str(f / "ceremony.json"))
        ok("ceremony", "contribute", "-d", str(root / o), "-o", str(f / f"contribution-{o}.json"))
    ok(
        "ceremony",
        "assemble",
        str(f / "ceremony.json"),
        *(str(f / f"contribution-{o}.json") for o in ORGS),
        "-o",
        str(f / "genesis.json"),
    )
    for o in ORGS:
        ok(
            "ceremony",
            "sign",
            str(f / "genesis.json"),
            "--org",
            o,
            "--contribution",
            str(f / f"contribution-{o}.json"),
            "-k",
            str(root / o / "keys" / f"admin-{o}.json"),
            "-o",
            str(f / f"genesis-{o}.sig"),
        )
    return root


def test_the_files_verify_and_contribute_is_deterministic(root: Path) -> None:
    f = root / "fed"
    r = ok(
        "ceremony", "verify", str(f / "genesis.json"), *(str(f / f"genesis-{o}.sig") for o in ORGS)
    )
    assert "signed by org1, org2, org3" in r.stdout
    again = root / "again.json"
    ok("ceremony", "contribute", "-d", str(root / "org2"), "-o", str(again))
    assert again.read_bytes() == (f / "contribution-org2.json").read_bytes()
    # a second --ceremony-init of the same directory changes nothing
    before = (root / "org1" / "keys" / "admin-org1.json").read_bytes()
    r = ok(
        "up", "--org", "org1", "-d", str(root / "org1"), "--ceremony-init", str(f / "ceremony.json")
    )
    assert "already initialised" in r.stdout
    assert (root / "org1" / "keys" / "admin-org1.json").read_bytes() == before


def test_refusals_are_one_line(root: Path, tmp_path: Path) -> None:
    f = root / "fed"
    doc = json.loads((f / "contribution-org2.json").read_text())
    doc["validators"][0]["address"] = "evil.example:7051"  # changed after signing
    bad = tmp_path / "contribution-org2.json"
    bad.write_bytes(cer.canonical(doc))
    assert "bad signature" in one_error(
        "ceremony",
        "assemble",
        str(f / "ceremony.json"),
        str(f / "contribution-org1.json"),
        str(bad),
        str(f / "contribution-org3.json"),
        "-o",
        str(tmp_path / "g.json"),
    )
    assert "no contribution from org3" in one_error(
        "ceremony",
        "assemble",
        str(f / "ceremony.json"),
        str(f / "contribution-org1.json"),
        str(f / "contribution-org2.json"),
        "-o",
        str(tmp_path / "g.json"),
    )
    assert "not signed by org3" in one_error(
        "ceremony",
        "verify",
        str(f / "genesis.json"),
        str(f / "genesis-org1.sig"),
        str(f / "genesis-org2.sig"),
    )
    assert "the configuration expects" in one_error(
        "ceremony",
        "verify",
        str(f / "genesis.json"),
        *(str(f / f"genesis-{o}.sig") for o in ORGS),
        "--sha256",
        "00" * 32,
    )
    assert "not an admin of org1" in one_error(
        "ceremony",
        "sign",
        str(f / "genesis.json"),
        "--org",
        "org1",
        "--contribution",
        str(f / "contribution-org1.json"),
        "-k",
        str(root / "org2" / "keys" / "admin-org2.json"),
        "-o",
        str(tmp_path / "s.sig"),
    )
    assert "holds organisation org1" in one_error(
        "up", "--org", "org2", "-d", str(root / "org1"), "--ceremony-init", str(f / "ceremony.json")
    )
    assert "org9 is not an organisation of the ceremony" in one_error(
        "up",
        "--org",
        "org9",
        "-d",
        str(tmp_path / "x"),
        "--ceremony-init",
        str(f / "ceremony.json"),
    )
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    assert "is not empty" in one_error(
        "up",
        "--org",
        "org1",
        "-d",
        str(tmp_path / "used"),
        "--ceremony-init",
        str(f / "ceremony.json"),
    )
    assert "has no genesis yet" in one_error("up", "--org", "org1", "-d", str(root / "org1"))
    assert "without genesis" in one_error("up", "-d", str(root / "org1"))
    assert "cannot read" in one_error("ceremony", "assemble", str(tmp_path / "nope.json"), "x")


def _node_config(root: Path, tmp_path: Path, **over: object) -> NodeConfig:
    f = root / "fed"
    d = {
        "data_dir": str(tmp_path / "ledger"),
        "key_file": "key.json",
        "genesis_file": str(f / "genesis.json"),
        "genesis_sha256": cer.sha256hex((f / "genesis.json").read_bytes()),
        "genesis_signatures": [str(f / f"genesis-{o}.sig") for o in ORGS],
    }
    d.update(over)  # type: ignore[arg-type]
    return NodeConfig.from_dict(yaml.safe_load(yaml.safe_dump(d)))


def test_the_node_checks_its_genesis_by_reference(root: Path, tmp_path: Path) -> None:
    f = root / "fed"
    check_genesis_reference(_node_config(root, tmp_path))  # the ceremony's genesis: starts
    with pytest.raises(ConfigError, match=r"genesis refused: genesis sha256 is .* expects 00"):
        check_genesis_reference(_node_config(root, tmp_path, genesis_sha256="00" * 32))
    with pytest.raises(ConfigError, match="genesis refused: genesis not signed by org3"):
        check_genesis_reference(
            _node_config(
                root,
                tmp_path,
                genesis_signatures=[str(f / "genesis-org1.sig"), str(f / "genesis-org2.sig")],
            )
        )
    with pytest.raises(ConfigError, match="genesis refused: cannot read"):
        check_genesis_reference(
            _node_config(root, tmp_path, genesis_signatures=[str(tmp_path / "missing.sig")])
        )
    # the hash alone pins the file too
    check_genesis_reference(_node_config(root, tmp_path, genesis_signatures=[]))
    with pytest.raises(ConfigError, match="genesis refused"):
        check_genesis_reference(
            _node_config(root, tmp_path, genesis_signatures=[], genesis_sha256="11" * 32)
        )
    assert not (tmp_path / "ledger").exists()
