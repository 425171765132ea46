"""Mistakes say so: a job or the service started wrong exits non-zero with one line on stderr that names
what is wrong and what to do; a traceback only under ``--debug``. And a data folder can be moved."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pyarrow as pa
import pytest

from fashion_catalog.conf import TableRef
from fashion_catalog.lakehouse.tables import TableMissingError, require_rows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args: list[str], cwd: str, timeout: int = 180, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "FASHION_CONF_PROFILE": "local", **(env or {})})


def _one_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "at org.apache" not in done.stderr + done.stdout
    return lines[0]


def test_a_job_with_a_mistyped_storage_root_says_which_table_is_missing(tmp_path):
    typo = tmp_path / "dta"
    done = _run(["-m", "fashion_catalog.jobs.stream", "--set", f"storage.root={typo}"], str(tmp_path))
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    line = _one_line(done)
    assert line.startswith("error: tables.products ") and f"{typo}/delta/products" in line and "does not exist" in line
    assert "load_catalog" in line and "storage.root" in line
    assert not (typo / "delta").exists()  # no empty tables were created
    # --debug: the same error with its traceback.
    debug = _run(["-m", "fashion_catalog.jobs.backfill", "--debug", "--set", f"storage.root={typo}"], str(tmp_path))
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "TableMissingError" in debug.stderr


def test_the_databricks_profile_off_a_cluster_says_where_to_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATABRICKS_RUNTIME_VERSION"}
    done = subprocess.run([sys.executable, "-m", "fashion_catalog.jobs.stream", "--profile", "databricks"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    line = _one_line(done)
    assert "not a Databricks cluster" in line and "databricks-connect" in line and "--profile local" in line
    assert "Spark" not in done.stdout  # it stopped before starting a local Spark


def test_the_app_with_an_unreachable_workspace_is_one_line_within_seconds(tmp_path):
    import socket
    import time

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    done = _run(["-m", "fashion_catalog.app.main", "--profile", "databricks", "--port", "0",
                 "--set", "search.backend=databricks", "--set", "vector_search.warehouse_id=w1",
                 "--set", f"model.name_or_path=http://127.0.0.1:{port}/serving-endpoints/encoder/invocations"],
                str(tmp_path), timeout=60, env={"DATABRICKS_HOST": f"http://127.0.0.1:{port}",
                                                "DATABRICKS_TOKEN": "t"})
    assert done.returncode == 2 and time.monotonic() - started < 30, (done.returncode, done.stderr[-2000:])
    line = _one_line(done)
    assert line.startswith(f"error: cannot reach the Databricks workspace at http://127.0.0.1:{port}")
    assert "DATABRICKS_HOST" in line


def test_a_source_table_that_is_empty_is_named(tmp_path):
    from deltalake import write_deltalake

    path = tmp_path / "products"
    write_deltalake(str(path), pa.table({"product_id": pa.array([], pa.int32())}))
    with pytest.raises(TableMissingError, match=r"^tables.products .*products is empty: load a catalogue"):
        require_rows(TableRef(path=str(path)), "tables.products", "load a catalogue")
    write_deltalake(str(path), pa.table({"product_id": pa.array([7], pa.int32())}), mode="append")
    require_rows(TableRef(path=str(path)), "tables.products", "load a catalogue")  # one row: no error


def test_the_service_with_a_missing_model_is_one_line(tmp_path):
    missing = tmp_path / "no-model"
    done = _run(["-m", "fashion_catalog.app.main", "--port", "0", "--set", f"model.name_or_path={missing}"],
                str(tmp_path))
    assert done.returncode == 2
    line = _one_line(done)
    assert line.startswith("error: model folder") and str(missing) in line and "model.name_or_path" in line
    bad_port = _run(["-m", "fashion_catalog.app.main", "--port", "70000"], str(tmp_path))
    assert bad_port.returncode == 2 and "search.port" in _one_line(bad_port)


def test_uvicorn_on_the_module_level_app_fails_its_start_up_with_the_same_line(tmp_path):
    uvicorn = os.path.join(os.path.dirname(sys.executable), "uvicorn")
    started = time.monotonic()
    done = subprocess.run([uvicorn, "fashion_catalog.app.main:app", "--port", "0"], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FASHION_CONF_PROFILE": "local"})
    assert done.returncode != 0 and time.monotonic() - started < 120
    assert "error: model folder" in done.stderr and "Traceback" not in done.stderr, done.stderr[-3000:]


def test_a_moved_data_folder_still_finds_its_images(spark, workspace, tmp_path):
    """image_path is stored relative to the image root (catalog.source_dir): copy the whole storage root
    elsewhere and every product's photo is still read from the copy."""
    from deltalake import DeltaTable

    from fashion_catalog.catalog.demo import generate_demo_catalog
    from fashion_catalog.catalog.loader import load_catalog
    from fashion_catalog.encoders.images import ImageLimits, read_image_bytes

    config = workspace.config()
    generate_demo_catalog(config.catalog_source_dir, n_products=6, missing_image_ids=0)
    load_catalog(spark, config)
    moved = tmp_path / "moved"
    shutil.copytree(workspace.path, moved)
    shutil.rmtree(config.catalog_source_dir)  # the original photos are gone: only the copy's can be read
    moved_config = type(workspace)(str(moved), workspace._model_dir).config()
    paths = DeltaTable(moved_config.tables.products.path).to_pyarrow_table(columns=["image_path"])
    stored = paths["image_path"].to_pylist()
    assert len(stored) == 6 and all(p.startswith("images/") and p.endswith(".jpg") for p in stored), stored
    limits = ImageLimits.from_config(moved_config)
    assert all(read_image_bytes(p, limits)[:2] == b"\xff\xd8" for p in stored)  # JPEG files, from the copy
