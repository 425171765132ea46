"""The demo as a new user runs it: its own lines on the terminal, Spark and Ivy in a log file."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fashion_catalog.catalog.demo import generate_demo_catalog
from fashion_catalog.lakehouse.local_cluster import loopback_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_the_demo_speaks_plainly_and_logs_the_rest(tmp_path, tiny_model_dir):
    catalog = generate_demo_catalog(str(tmp_path / "catalog"), n_products=24)
    args = [sys.executable, "-m", "fashion_catalog.jobs.demo", "--set", f"storage.root={tmp_path}/data",
            "--set", f"catalog.source_dir={catalog}", "--set", f"images.allowed_roots=[{tmp_path}]",
            "--set", f"model.name_or_path={tiny_model_dir}", "--set", "model.id=tiny-clip-test",
            "--set", "model.torch_threads=1"]
    done = subprocess.run(args, env=loopback_env(), capture_output=True, text=True, timeout=600, cwd=ROOT)
    log = tmp_path / "data" / "logs" / "demo.log"
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) <= 40, done.stdout
    assert f"logs: {log}" in lines[0]
    for step in ("== 1. load catalog", "== 2. stream", "== 4. stream again", "== 5. product_embeddings_multimodal"):
        assert any(line.startswith(step) for line in lines), step
    assert "RANDOM weights" in done.stdout  # the model in use is named, random weights said plainly
    # Spark, Ivy and the libraries are in the log, not on the terminal.
    text = log.read_text()
    assert ":: resolving dependencies" in text or "Ivy" in text or "ivy" in text
    assert "streaming.metrics" in text
    assert not any(" WARN " in line or ":: resolving" in line for line in lines)
    assert done.stderr.strip() == ""
    # Steps 1 and 4 in words, not a raw dict or JSON.
    assert not any(line.lstrip().startswith(("{", "{'", '{"')) for line in lines), done.stdout
    # It ends with what happened, the command that opens the page on these tables and its address, and a next step.
    tail = "\n".join(lines[-14:])
    assert "== Done" in tail and "products embedded" in tail and "re-encoded only what changed" in tail
    assert f".venv/bin/python -m fashion_catalog.app.main --port 8000 --set storage.root={tmp_path}/data" in tail
    assert "http://127.0.0.1:8000" in tail and "Next:" in tail and "docs/deploy.md" in tail
    # Expected notices (random weights, the photo missing on purpose) are said in words, never counted as warnings.
    assert "note: the model has random weights" in done.stdout
    warnings_at = next((i for i, line in enumerate(lines) if " warnings (details in" in line), None)
    counted = lines[warnings_at:] if warnings_at is not None else []
    assert not any("RANDOM" in line or "IMAGE_MISSING" in line for line in counted), counted
