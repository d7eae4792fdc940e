"""Node configuration (config.py): loading, defaults, validation, and error messages a user can
act on (every bad input is a ConfigError naming the problem, never a traceback)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from consortium_node.config import ConfigError, ConsensusConfig, NodeConfig, Peer

pytestmark = pytest.mark.unit

PEER_ID = "ab" * 32


def minimal(**kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"data_dir": "data", "key_file": "node.key", "genesis_file": "genesis.json"}
    d.update(kw)
    return d


def test_minimal_config_and_defaults() -> None:
    cfg = NodeConfig.from_dict(minimal())
    assert cfg.data_dir == Path("data")
    assert cfg.key_file == Path("node.key")
    assert cfg.genesis_file == Path("genesis.json")
    assert cfg.listen == "127.0.0.1:7050"
    assert cfg.metrics_listen is None
    assert cfg.peers == ()
    assert cfg.consensus == ConsensusConfig()
    assert cfg.mempool_size == 100_000
    assert cfg.fsync is True
    assert (cfg.log_format, cfg.log_level) == ("json", "INFO")


def test_full_config() -> None:
    cfg = NodeConfig.from_dict(
        minimal(
            listen="0.0.0.0:9000",
            metrics_listen="[::1]:9100",
            organization="org-a",
            name="n1",
            peers=[{"node_id": PEER_ID, "address": "peer-1.svc:7050"}],
            consensus={"tick_ms": 5, "block_interval_ms": "20", "election_ticks": 30},
            mempool_size="500",
            fsync=False,
            log_format="text",
            log_level="debug",
        )
    )
    assert cfg.peers == (Peer(bytes.fromhex(PEER_ID), "peer-1.svc:7050"),)
    assert cfg.consensus == ConsensusConfig(tick_ms=5, block_interval_ms=20, election_ticks=30)
    assert cfg.mempool_size == 500
    assert cfg.fsync is False
    assert cfg.log_level == "DEBUG"  # normalised
    assert cfg.metrics_listen == "[::1]:9100"


def test_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    f = tmp_path / "conf" / "node.yaml"
    f.parent.mkdir()
    f.write_text("data_dir: data\nkey_file: /abs/node.key\ngenesis_file: ../genesis.json\n")
    cfg = NodeConfig.load(f)
    assert cfg.data_dir == f.parent / "data"
    assert cfg.key_file == Path("/abs/node.key")  # absolute paths stay absolute
    assert cfg.genesis_file == f.parent / "../genesis.json"


def test_load_json_is_yaml(tmp_path: Path) -> None:
    f = tmp_path / "node.json"
    f.write_text('{"data_dir": "d", "key_file": "k", "genesis_file": "g", "listen": "h:1"}')
    assert NodeConfig.load(f).listen == "h:1"


def test_to_dict_round_trip() -> None:
    cfg = NodeConfig.from_dict(
        minimal(
            peers=[{"node_id": PEER_ID, "address": "p:1"}],
            consensus={"tick_ms": 7},
            metrics_listen="m:2",
        )
    )
    d = cfg.to_dict()
    assert NodeConfig.from_dict(d) == cfg
    assert d["peers"] == [{"node_id": PEER_ID, "address": "p:1"}]
    assert d["consensus"]["tick_ms"] == 7


# -- load errors ------------------------------------------------------------------------------


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config .*nope\.yaml"):
        NodeConfig.load(tmp_path / "nope.yaml")


def test_load_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        NodeConfig.load(tmp_path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("data_dir: [unclosed", "not valid YAML"),
        ("a: b: c", "not valid YAML"),
        ("", "must be a mapping"),
        ("- a\n- b\n", "must be a mapping"),
        ("just a string", "must be a mapping"),
    ],
    ids=["unclosed", "nested-colon", "empty", "list", "scalar"],
)
def test_load_bad_documents(tmp_path: Path, text: str, match: str) -> None:
    f = tmp_path / "node.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        NodeConfig.load(f)
    assert str(f) in str(e.value)


# -- from_dict errors ---------------------------------------------------------------------------


def test_unknown_keys_are_listed() -> None:
    with pytest.raises(ConfigError, match=r"unknown config keys: datadir, port$"):
        NodeConfig.from_dict(minimal(port=1, datadir="x"))


def test_unknown_consensus_keys_are_listed() -> None:
    with pytest.raises(ConfigError, match=r"unknown consensus keys: tick$"):
        NodeConfig.from_dict(minimal(consensus={"tick": 1, "tick_ms": 2}))


@pytest.mark.parametrize("key", ["data_dir", "key_file", "genesis_file"])
def test_missing_required_key(key: str) -> None:
    d = minimal()
    del d[key]
    with pytest.raises(ConfigError, match=f"config lacks required key '{key}'"):
        NodeConfig.from_dict(d)


def test_missing_peer_fields() -> None:
    with pytest.raises(ConfigError, match="'address'"):
        NodeConfig.from_dict(minimal(peers=[{"node_id": PEER_ID}]))


@pytest.mark.parametrize(
    "extra",
    [
        {"peers": [{"node_id": "zz", "address": "h:1"}]},
        {"peers": [5]},
        {"peers": "h:1"},
        {"consensus": {"tick_ms": "fast"}},
        {"mempool_size": "big"},
        {"mempool_size": None},
    ],
    ids=["peer-hex", "peer-int", "peers-str", "tick-str", "mempool-str", "mempool-null"],
)
def test_bad_values(extra: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="invalid config value"):
        NodeConfig.from_dict(minimal(**extra))


@pytest.mark.parametrize(
    "addr",
    [
        "localhost",
        "localhost:",
        ":7050",
        "host:port",
        "host:70000",
        "host:65536",
        "host:-1",
        "",
        "h: 1",
    ],
)
@pytest.mark.parametrize("field", ["listen", "metrics_listen", "peer"])
def test_bad_addresses(field: str, addr: str) -> None:
    extra: dict[str, Any] = (
        {"peers": [{"node_id": PEER_ID, "address": addr}]} if field == "peer" else {field: addr}
    )
    with pytest.raises(ConfigError, match="must be HOST:PORT") as e:
        NodeConfig.from_dict(minimal(**extra))
    assert repr(addr) in str(e.value)


@pytest.mark.parametrize("addr", ["h:0", "h:65535", "10.0.0.1:80", "[::]:7050", "node-0.ns.svc:1"])
def test_good_addresses(addr: str) -> None:
    assert NodeConfig.from_dict(minimal(listen=addr)).listen == addr


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"consensus": {"tick_ms": 0}}, "tick_ms"),
        ({"consensus": {"block_interval_ms": -5}}, "block_interval_ms"),
        ({"mempool_size": 0}, "mempool_size"),
        ({"log_format": "xml"}, "log_format"),
    ],
    ids=["tick", "interval", "mempool", "log-format"],
)
def test_validation_errors(extra: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        NodeConfig.from_dict(minimal(**extra))


@pytest.mark.parametrize(
    "extra",
    [
        {"metrics_listen": 9090},  # AttributeError: int has no rpartition
        {"consensus": ["tick_ms"]},  # AttributeError: list has no items
        {"listen": "h:\u00b2"},  # ValueError from int() in _is_hostport, not a ConfigError message
        {"listen": "h:\u0663"},  # accepted: an Arabic-Indic digit port that nothing can bind
        {"fsync": "false"},  # accepted as True: bool("false")
        {"log_level": "LOUD"},  # accepted; logging.setLevel raises later at start-up
        {"peers": [{"node_id": "00", "address": "h:1"}]},  # a 1-byte node id is accepted
    ],
    ids=[
        "metrics-int",
        "consensus-list",
        "port-superscript",
        "port-arabic",
        "fsync-str",
        "level",
        "peer-id-len",
    ],
)
def test_type_confused_values_are_config_errors(extra: dict[str, Any]) -> None:
    """BUG: these reach the node as a traceback (AttributeError/ValueError) or as a silently
    wrong setting. Each should be a ConfigError naming the key."""
    with pytest.raises(ConfigError) as e:
        NodeConfig.from_dict(minimal(**extra))
    assert type(e.value) is ConfigError
    assert next(iter(extra)) in str(e.value)


def test_genesis_reference_is_parsed_relative_and_round_trips(tmp_path: Path) -> None:
    digest = "ab" * 32
    cfg = NodeConfig.from_dict(
        minimal(genesis_sha256=digest, genesis_signatures=["sigs/a.sig", "sigs/b.sig"]),
        base=tmp_path,
    )
    assert cfg.genesis_sha256 == digest
    assert cfg.genesis_signatures == (tmp_path / "sigs/a.sig", tmp_path / "sigs/b.sig")
    assert NodeConfig.from_dict(cfg.to_dict()) == cfg
    assert "genesis_sha256" not in NodeConfig.from_dict(minimal()).to_dict()  # legacy unchanged


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"genesis_sha256": "AB" * 32}, "64 lower-case hex"),
        ({"genesis_sha256": "ab" * 31}, "64 lower-case hex"),
        ({"genesis_sha256": "ab" * 32, "genesis_signatures": "a.sig"}, "list of file paths"),
        ({"genesis_signatures": ["a.sig"]}, "need genesis_sha256"),
    ],
)
def test_bad_genesis_reference_is_one_config_error(extra: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        NodeConfig.from_dict(minimal(**extra))
