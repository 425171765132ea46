"""Shared fixtures: one real local Spark + Delta session and one tiny random CLIP per test session."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
import uuid

import pytest

from fashion_catalog.conf import load_config

logging.getLogger("py4j").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A tiny CLIP (random weights, locally built tokenizer) saved with save_pretrained."""
    from fashion_catalog.encoders.random_clip import build_random_clip

    return build_random_clip(tmp_path_factory.mktemp("models") / "tiny-clip", shape="tiny", seed=0)


@pytest.fixture(scope="session")
def reference_clip(tiny_model_dir):
    """The tiny CLIP's forward pass in numpy (tests/reference_clip.py): the expected vectors of every test."""
    from tests.reference_clip import ReferenceClip

    return ReferenceClip(tiny_model_dir)


@pytest.fixture(scope="session")
def session_root(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("spark"))


def make_config(root: str, model_dir: str, **overrides):
    """The local profile pointed at ``root`` and the tiny model, plus any dotted overrides."""
    values = {
        "model.name_or_path": model_dir,
        "model.id": "tiny-clip-test",
        "model.torch_threads": 1,
        "stream.processing_time": "1 second",
        "spark.conf.spark.sql.shuffle.partitions": "2",
        # The in-process sessions (classic and Connect) evaluate expressions without generating code: the
        # tests' tables are a few rows, where compiling each query's Java costs more than it saves (the
        # Spark-heavy tests run ~30% faster). Jobs the tests start as processes keep Spark's default
        # (whole-stage codegen), so both ways are exercised.
        "spark.conf.spark.sql.codegen.wholeStage": "false",
        "spark.conf.spark.sql.codegen.factoryMode": "NO_CODEGEN",
        # The tests draw their images in the temporary directory.
        "images.allowed_roots": [tempfile.gettempdir()],
    }
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    return load_config("local", overrides=values, base_dir=root)


@pytest.fixture(scope="session")
def spark(session_root, tiny_model_dir):
    """One Delta-enabled local Spark session for the whole test run."""
    from fashion_catalog.lakehouse.session import get_spark

    os.environ["PYSPARK_PYTHON"] = sys.executable
    config = make_config(session_root, tiny_model_dir)
    session = get_spark(config)
    session.conf.set("spark.sql.shuffle.partitions", "2")
    yield session
    session.stop()


class _Background:
    """A Spark Connect server started in a thread at session start, while the first tests run."""

    def __init__(self, work_dir: str):
        self.server, self.error = None, None
        self.thread = threading.Thread(target=self._start, args=(work_dir,), daemon=True, name="connect-server")
        self.thread.start()

    def _start(self, work_dir: str) -> None:
        from fashion_catalog.lakehouse.local_cluster import ConnectServer

        try:
            self.server = ConnectServer(work_dir)
        except BaseException as exc:  # noqa: BLE001 - raised in the fixture that waits for it
            self.error = exc

    def wait(self, timeout_s: float = 300):
        self.thread.join(timeout_s)
        if self.error is not None:
            raise self.error
        if self.server is None:
            raise TimeoutError(f"the Spark Connect server did not start in {timeout_s}s")
        return self.server


_CONNECT: _Background | None = None


def pytest_collection_finish(session):
    """Start the Connect server now when a collected test will need it (it starts in parallel with the rest)."""
    global _CONNECT
    if any("connect_server" in getattr(item, "fixturenames", ()) for item in session.items):
        _CONNECT = _Background(tempfile.mkdtemp(prefix="connect-server-"))


def pytest_collection_modifyitems(config, items):
    """The tests marked slow run last (in their order), so a failure elsewhere shows within minutes."""
    items[:] = [i for i in items if i.get_closest_marker("slow") is None] + \
               [i for i in items if i.get_closest_marker("slow") is not None]


@pytest.fixture(scope="session")
def connect_server():
    """One local Spark Connect server (with Delta) on 127.0.0.1 for the whole test run (started at collection)."""
    global _CONNECT
    if _CONNECT is None:
        _CONNECT = _Background(tempfile.mkdtemp(prefix="connect-server-"))
    server = _CONNECT.wait()
    yield server
    server.stop()


CONNECT_MODE_ENV = "SPARK_CONNECT_MODE_ENABLED"


@pytest.fixture(scope="session")
def connect_spark(connect_server, session_root, tiny_model_dir, spark):
    """A Spark Connect session on the local server (no SparkContext, no py4j: what Databricks clients get).

    A Connect client process marks itself with SPARK_CONNECT_MODE_ENABLED, which makes
    ``pyspark.sql.functions`` build Connect expressions. This test process also runs the
    classic session, so the mark is set only while a Connect test runs (``any_spark``).
    """
    from fashion_catalog.lakehouse.session import get_spark

    session = get_spark(make_config(session_root, tiny_model_dir, spark__remote=connect_server.url))
    os.environ.pop(CONNECT_MODE_ENV, None)
    yield session
    session.stop()


@pytest.fixture(params=["classic", "connect"])
def any_spark(request, monkeypatch):
    """The test runs twice: on the classic session, then on Spark Connect (the whole test uses that session)."""
    if request.param == "classic":
        return request.getfixturevalue("spark")
    session = request.getfixturevalue("connect_spark")
    monkeypatch.setenv(CONNECT_MODE_ENV, "1")
    return session


@pytest.fixture(scope="session")
def table_template(spark, tmp_path_factory, tiny_model_dir) -> str:
    """Empty products, embeddings and quarantine tables, created once; each Spark test's workspace gets a copy
    (a copy takes milliseconds, CREATE TABLE ~0.7 s each time)."""
    from fashion_catalog.lakehouse.tables import ensure_all_tables

    root = tmp_path_factory.mktemp("table-template")
    config = make_config(str(root), tiny_model_dir)
    ensure_all_tables(spark, config)
    return config.root


class Workspace:
    """A storage root (tables, checkpoint) and a config factory bound to it."""

    def __init__(self, path: str, model_dir: str):
        self.path, self._model_dir = path, model_dir

    def config(self, **overrides):
        return make_config(self.path, self._model_dir, **overrides)


def new_workspace(root, model_dir: str, template: str | None = None) -> Workspace:
    """A workspace at ``root`` (created), starting with a copy of the template's empty tables when given."""
    os.makedirs(root, exist_ok=True)
    if template is not None:
        shutil.copytree(template, os.path.join(root, "data"))
    return Workspace(str(root), model_dir)


@pytest.fixture
def workspace(request, tmp_path, tiny_model_dir):
    """A fresh storage root for one test. A test that uses Spark starts with the empty tables already there
    (copied from :func:`table_template`)."""
    uses_spark = {"spark", "any_spark", "connect_spark"} & set(request.fixturenames)
    template = request.getfixturevalue("table_template") if uses_spark else None
    ws = new_workspace(tmp_path / f"ws-{uuid.uuid4().hex[:8]}", tiny_model_dir, template)
    yield ws
    shutil.rmtree(ws.path, ignore_errors=True)
