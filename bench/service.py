"""Start the search service as a user would (``python -m fashion_catalog.app.main --set ...``), on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    """``python -m fashion_catalog.app.main`` with ``--set`` overrides; ready once /health shows a synced index."""

    def __init__(self, overrides: dict[str, object], log_path: str, timeout_s: float = 300):
        import requests

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "fashion_catalog.app.main", "--set", "search.host=127.0.0.1",
                "--set", f"search.port={self.port}"]
        for key, value in overrides.items():
            args += ["--set", f"{key}={value}"]
        self.log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited with {self.proc.returncode}; see {log_path}")
            try:
                if requests.get(f"{self.url}/health", timeout=2).json().get("status") == "ok":
                    return
            except (requests.ConnectionError, requests.Timeout, ValueError):
                pass
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"the service was not ready after {timeout_s}s; see {log_path}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
