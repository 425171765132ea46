"""Start the search service as a user would (``python -m fashion_catalog.app.main --set ...``), on loopback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

LISTENING = re.compile(r"fashion search service listening on (http://\S+)")


class ServiceProcess:
    """``python -m fashion_catalog.app.main`` with ``--set`` overrides; ready once /health shows a synced index.

    The service binds a free port itself (``search.port=0``) and prints it: no port is picked here and left
    for another process to take before the service binds it.
    """

    def __init__(self, overrides: dict[str, object], log_path: str, timeout_s: float = 300):
        import requests

        args = [sys.executable, "-m", "fashion_catalog.app.main", "--set", "search.host=127.0.0.1",
                "--set", "search.port=0"]
        for key, value in overrides.items():
            args += ["--set", f"{key}={value}"]
        self.log_path = log_path
        self.log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.url = ""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited with {self.proc.returncode}; see {log_path}")
            if not self.url:
                with open(log_path, encoding="utf-8", errors="replace") as fh:
                    found = LISTENING.search(fh.read())
                self.url = found.group(1) if found else ""
            try:
                if self.url and requests.get(f"{self.url}/health", timeout=2).json().get("status") == "ok":
                    return
            except (requests.ConnectionError, requests.Timeout, ValueError):
                pass
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"the service was not ready after {timeout_s}s; see {log_path}")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
