"""The CLI's error policy: a bad flag, a missing key file, an unreachable node give ONE line on
stderr and a non-zero exit code, never a traceback."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from consortium_node.cli import app
from typer.testing import CliRunner

if TYPE_CHECKING:
    from tests.unit.cli.conftest import FakeNode

pytestmark = pytest.mark.unit

runner = CliRunner()


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_keys_new_writes_0600_and_refuses_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "k.json"
    r = runner.invoke(app, ["keys", "new", "--out", str(out)])
    assert r.exit_code == 0, r.output
    pub = r.stdout.strip()
    assert json.loads(out.read_text())["public_key"] == pub
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    r2 = runner.invoke(app, ["keys", "new", "--out", str(out)])
    assert r2.exit_code == 1
    assert "already exists" in _one_error_line(r2.stderr)
    r3 = runner.invoke(app, ["keys", "new", "--out", str(out), "--force", "--json"])
    assert r3.exit_code == 0
    assert json.loads(r3.stdout)["public_key"] != pub
    r4 = runner.invoke(app, ["keys", "show", str(out)])
    assert r4.stdout.strip() == json.loads(r3.stdout)["public_key"]


def test_keys_new_default_location_is_under_home(tmp_path: Path) -> None:
    r = runner.invoke(app, ["keys", "new"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "home" / ".consortium" / "key.json").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["status", "--bogus"], "No such option: --bogus"),
        (["tx", "put", "k"], "Missing argument 'VALUE'"),
        (["tx", "issue", "gold", "zz", "5"], "must be hex"),
        (["tx", "transfer", "gold", "ab" * 32, "0"], "amount"),
        (["query", "tx", "abcd"], "32 bytes"),
        (["bench", "--streams", "4", "--keys", "2"], "--keys"),
        (["status", "--timeout", "soon"], "--timeout"),
        (["frobnicate"], "No such command"),
    ],
)
def test_usage_errors_are_one_line_exit_2(args: list[str], needle: str) -> None:
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert needle in _one_error_line(r.stderr)
    assert r.stdout == ""


def test_missing_key_file_is_one_line(tmp_path: Path, closed_port: int) -> None:
    missing = tmp_path / "nope.json"
    r = runner.invoke(
        app, ["tx", "put", "k", "v", "--key", str(missing), "-e", f"127.0.0.1:{closed_port}"]
    )
    assert r.exit_code == 1
    assert "key file" in _one_error_line(r.stderr) and "not found" in r.stderr


def test_no_default_key_is_one_line(closed_port: int) -> None:
    r = runner.invoke(app, ["tx", "put", "k", "v", "-e", f"127.0.0.1:{closed_port}"])
    assert r.exit_code == 1
    assert "consortium keys new" in _one_error_line(r.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["query", "get", "k"],
        ["query", "balance", "gold", "ab" * 32],
        ["query", "tx", "ab" * 32],
        ["query", "block", "1"],
        ["blocks"],
        ["bench", "--txs", "10"],
    ],
)
def test_unreachable_node_is_one_line(args: list[str], closed_port: int) -> None:
    ep = f"127.0.0.1:{closed_port}"
    r = runner.invoke(app, [*args, "--endpoint", ep, "--timeout", "2"])
    assert r.exit_code == 1, r.output
    line = _one_error_line(r.stderr)
    assert line == f"error: node {ep} unreachable (connection refused)"


def test_unreachable_node_for_tx(tmp_path: Path, closed_port: int) -> None:
    key = tmp_path / "k.json"
    assert runner.invoke(app, ["keys", "new", "--out", str(key)]).exit_code == 0
    ep = f"127.0.0.1:{closed_port}"
    r = runner.invoke(app, ["tx", "put", "k", "v", "--key", str(key), "--endpoint", ep])
    assert r.exit_code == 1
    assert "unreachable" in _one_error_line(r.stderr)


def test_endpoint_from_env(monkeypatch: pytest.MonkeyPatch, closed_port: int) -> None:
    ep = f"127.0.0.1:{closed_port}"
    monkeypatch.setenv("CONSORTIUM_ENDPOINT", ep)
    r = runner.invoke(app, ["status"])
    assert r.exit_code == 1
    assert ep in _one_error_line(r.stderr)


def test_data_dir_errors(tmp_path: Path, closed_port: int) -> None:
    r = runner.invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert r.exit_code == 1
    assert "endpoints.json not found" in _one_error_line(r.stderr)
    (tmp_path / "endpoints.json").write_text(
        json.dumps(
            {
                "chain_id": "c",
                "consensus": "bft",
                "nodes": [
                    {
                        "name": "n0",
                        "organization": "o",
                        "endpoint": f"127.0.0.1:{closed_port}",
                        "pid": 1,
                        "node_id": "00",
                    }
                ],
                "client_key": "client.json",
            }
        )
    )
    r = runner.invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert r.exit_code == 1
    assert "no node of" in _one_error_line(r.stderr) and "connection refused" in r.stderr
    r = runner.invoke(app, ["status", "--data-dir", str(tmp_path), "--node", "zz"])
    assert r.exit_code == 1
    assert "no node named 'zz'" in _one_error_line(r.stderr)
    (tmp_path / "endpoints.json").write_text("{")
    r = runner.invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert r.exit_code == 1
    _one_error_line(r.stderr)


def test_help_works() -> None:
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("keys", "tx", "query", "status", "blocks", "bench"):
        assert cmd in r.stdout


# Numbers out of range (issue 13, defect 11): heights, nonces and amounts are uint64. Before,
# 2^64 reached protobuf/build_body and printed "internal error: ValueError", and a negative
# number was read as an option ("No such option: -5").
U64_OVER = str(2**64)


@pytest.mark.parametrize(
    ("command", "args", "needle"),
    [
        (["tx", "put"], ["k", "v", "--nonce", U64_OVER], "'--nonce'"),
        (["query", "block"], [U64_OVER], "HEIGHT must be between 0 and 18446744073709551615"),
        (["query", "block"], ["--", "-5"], "HEIGHT must be between 0 and 18446744073709551615"),
        (["blocks"], ["--from", U64_OVER], "'--from'"),
        (["tx", "issue"], ["gold", "ab" * 32, U64_OVER], "'amount'"),
        (["gov", "vote"], [U64_OVER, "yes"], "'proposal'"),
        (["gov", "show"], [U64_OVER], "'proposal'"),
        (["gov", "withdraw"], [U64_OVER], "'proposal'"),
        (
            ["gov", "sign", "set-param"],
            ["n", "v", "--out", "e.json", "--expiry", U64_OVER],
            "'--expiry'",
        ),
    ],
)
def test_out_of_range_numbers_are_one_line_usage_errors(
    command: list[str], args: list[str], needle: str, fake_node: FakeNode, tmp_path: Path
) -> None:
    key = tmp_path / "k.json"
    assert runner.invoke(app, ["keys", "new", "--out", str(key)]).exit_code == 0
    options = ["--endpoint", fake_node.endpoint]
    if command[0] in ("tx", "gov") and command[1] != "show":
        options += ["--key", str(key)]
    r = runner.invoke(app, [*command, *options, *args])
    line = _one_error_line(r.stderr)
    assert r.exit_code == 2, r.output
    assert needle in line and "internal error" not in line


@pytest.mark.parametrize(
    "args",
    [
        ["query", "block", "-5"],
        ["tx", "issue", "gold", "ab" * 32, "-5"],
        ["tx", "put", "k", "-5"],
    ],
)
def test_negative_numbers_say_so(args: list[str], closed_port: int) -> None:
    r = runner.invoke(app, [*args, "--endpoint", f"127.0.0.1:{closed_port}"])
    line = _one_error_line(r.stderr)
    assert r.exit_code == 2, r.output
    assert line.startswith("error: -5: ") and "no negative numbers" in line
    assert "No such option" not in line
    assert "put '--' before it" in line


def test_a_value_starting_with_a_dash_passes_after_double_dash(
    fake_node: FakeNode, tmp_path: Path
) -> None:
    key = tmp_path / "k.json"
    assert runner.invoke(app, ["keys", "new", "--out", str(key)]).exit_code == 0
    ep = ["--endpoint", fake_node.endpoint, "--key", str(key), "--wait"]
    r = runner.invoke(app, ["tx", "put", *ep, "--", "k", "-5"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["query", "get", "k", "--endpoint", fake_node.endpoint])
    assert r.stdout.strip() == "-5"
