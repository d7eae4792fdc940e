"""Real node processes for integration tests: start `consortium-node` on 127.0.0.1 with a
random free port, wait until it reports serving (its --ready-file), stop it with SIGTERM or
SIGKILL. Used by tests/integration."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.wait import WaitTimeout, wait_for

START_TIMEOUT = 30.0


class NodeProcess:
    def __init__(self, data_dir: Path, extra: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log = data_dir.parent / f"{data_dir.name}.log"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> NodeProcess:
        ready = self.data_dir.parent / f"{self.data_dir.name}.ready"
        ready.unlink(missing_ok=True)
        listen = f"127.0.0.1:{self.port}"  # reuse the port across restarts
        cmd = [
            sys.executable,
            "-m",
            "consortium_node",
            "dev",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            listen,
            "--ready-file",
            str(ready),
            *self.extra,
        ]
        logf = self.log.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        proc = self.proc

        def serving() -> bool:  # the node writes its ready file once it serves
            if proc.poll() is not None:
                raise RuntimeError(f"node exited with {proc.returncode}: {self.tail()}")
            return ready.exists()

        try:
            wait_for(serving, START_TIMEOUT, f"{self.data_dir.name}'s ready file", 0.02)
        except WaitTimeout:
            self.kill()
            raise TimeoutError(f"node did not start in {START_TIMEOUT}s: {self.tail()}") from None
        self.port = json.loads(ready.read_text())["port"]
        return self

    def tail(self, n: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
