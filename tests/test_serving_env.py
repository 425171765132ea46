"""The registered encoder served from a clean environment built from the model's own requirements.

`mlflow models serve --env-manager uv` creates a fresh environment from the model's pinned
serving requirements (no pyspark, nothing from this project's venv) and serves the alias URI.
Installing torch again takes minutes and gigabytes, so this runs only when asked:
``FASHION_SERVING_ENV_CHECK=1 .venv/bin/python -m pytest -m serving_env -s`` (``make serving-env-check``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
import requests

from fashion_catalog.conf import load_config

pytestmark = [pytest.mark.serving_env, pytest.mark.skipif(
    os.environ.get("FASHION_SERVING_ENV_CHECK") != "1",
    reason="slow: set FASHION_SERVING_ENV_CHECK=1 (make serving-env-check) to build the serving environment")]


def test_alias_serves_from_a_clean_environment_built_from_the_models_requirements(tmp_path, tiny_model_dir):
    from fashion_catalog.encoders.registry import register_model

    config = load_config("local", base_dir=tmp_path, overrides={"model.name_or_path": tiny_model_dir,
                                                                "model.id": "tiny-clip-test"})
    info = register_model(config)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bin_dir = os.path.dirname(sys.executable)
    env = dict(os.environ, MLFLOW_TRACKING_URI=config.mlflow.tracking_uri,
               PATH=bin_dir + os.pathsep + os.environ["PATH"])
    started = time.time()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", info["alias_uri"],
                             "-h", "127.0.0.1", "-p", str(port), "--env-manager", "uv"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = started + 1800
        while time.time() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(2)
        ready_s = time.time() - started
        r = requests.post(f"http://127.0.0.1:{port}/invocations", json={"dataframe_records": [{"text": "red dress"}]},
                          timeout=60)
        assert r.status_code == 200, r.text
        [row] = r.json()["predictions"]
        assert row["modality"] == "text" and len(row["embedding"]) == 512 and row["error"] is None
        print(f"clean-environment serving: ready after {ready_s:.0f}s")
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
