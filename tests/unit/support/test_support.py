"""The shared test/bench support (tests/support): the bounded wait, the port allocator and the
kubectl wrapper (run against a stand-in kubectl script, a real subprocess)."""

from __future__ import annotations

import json
import socket
import stat
import time
from pathlib import Path

import pytest

from tests.support.kube import Kubectl, KubectlError, kubectl_binary
from tests.support.ports import free_port, free_ports
from tests.support.wait import WaitTimeout, wait_for

pytestmark = pytest.mark.unit


def test_wait_returns_the_first_truthy_value() -> None:
    values = iter([None, 0, "", {"ready": True}])
    assert wait_for(lambda: next(values), 5, "a value", every=0.001) == {"ready": True}


def test_wait_probes_at_least_once_even_without_time() -> None:
    assert wait_for(lambda: 42, 0, "an answer") == 42


def test_wait_times_out_naming_what_with_last_error_and_diagnostics() -> None:
    calls = 0

    def probe() -> bool:
        nonlocal calls
        calls += 1
        raise ValueError(f"not yet {calls}")

    t0 = time.monotonic()
    with pytest.raises(WaitTimeout) as err:
        wait_for(probe, 0.2, "the thing", 0.05, retry_on=(ValueError,), diagnostics=lambda: "D")
    elapsed = time.monotonic() - t0
    text = str(err.value)
    assert text.startswith("timed out after 0.2s waiting for the thing")
    assert f"last error: ValueError: not yet {calls}" in text and text.endswith("\nD")
    assert 0.2 <= elapsed < 2.0 and calls >= 2
    assert isinstance(err.value, AssertionError)


def test_wait_does_not_swallow_errors_it_was_not_told_to_retry() -> None:
    def probe() -> bool:
        raise RuntimeError("process exited")

    with pytest.raises(RuntimeError, match="process exited"):
        wait_for(probe, 5, "x", retry_on=(ValueError,))


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(8)
    assert len(set(ports)) == 8
    for p in [*ports, free_port()]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))


@pytest.fixture
def fake_kubectl(tmp_path: Path) -> Path:
    """A stand-in kubectl: prints its argv as JSON; `get ... missing` fails as NotFound;
    `fail` exits 3."""
    script = tmp_path / "kubectl"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        "args = sys.argv[1:]\n"
        "if 'missing' in args:\n"
        "    sys.stderr.write('Error from server (NotFound): x \"missing\" not found\\n')\n"
        "    sys.exit(1)\n"
        "if 'fail' in args:\n"
        "    sys.stdout.write('partial output\\n'); sys.exit(3)\n"
        "stdin = sys.stdin.read() if 'apply' in args else ''\n"
        "print(json.dumps({'argv': args, 'stdin': stdin}))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_kubectl_binds_kubeconfig_and_context(fake_kubectl: Path) -> None:
    k = Kubectl(str(fake_kubectl), Path("/k/config"), "ctx")
    out = k.json("get", "pods")
    assert out["argv"] == [
        "--kubeconfig",
        "/k/config",
        "--context",
        "ctx",
        "get",
        "pods",
        "-o",
        "json",
    ]
    applied = json.loads(k.apply("kind: X", "ns").stdout)
    assert applied["argv"][-5:] == ["--namespace", "ns", "apply", "-f", "-"]
    assert applied["stdin"] == "kind: X"
    assert Kubectl(str(fake_kubectl), "/k")
    assert "--context" not in Kubectl(str(fake_kubectl), "/k").argv("get")


def test_kubectl_errors_and_not_found(fake_kubectl: Path) -> None:
    k = Kubectl(str(fake_kubectl), "/k")
    with pytest.raises(KubectlError, match=r"kubectl get fail failed \(3\):\npartial output"):
        k.run("get", "fail")
    assert k.run("get", "fail", check=False).returncode == 3
    assert k.get("pod", "missing", "ns") is None
    assert k.get("pod", "p", "ns") == {
        "argv": ["--kubeconfig", "/k", "get", "pod", "p", "-n", "ns", "-o", "json"],
        "stdin": "",
    }


def test_kubectl_binary_env_then_cache_then_path(
    fake_kubectl: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tests.support.kube as kube

    cache = tmp_path / "cache"
    monkeypatch.setattr(kube, "CACHE_DIR", cache)
    monkeypatch.setenv("KUBECTL", str(fake_kubectl))
    assert kubectl_binary() == str(fake_kubectl)
    monkeypatch.setenv("KUBECTL", str(tmp_path / "nope"))  # not a file: skipped
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert kubectl_binary() is None
    (cache / "bin").mkdir(parents=True)
    cached = cache / "bin" / "kubectl"
    cached.write_bytes(fake_kubectl.read_bytes())
    cached.chmod(0o755)
    assert kubectl_binary() == str(cached)
    cached.unlink()
    monkeypatch.setenv("PATH", str(fake_kubectl.parent))
    assert kubectl_binary() == str(fake_kubectl)
