"""Shared fixtures: one real local Spark + Delta session and one tiny random CLIP per test session."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
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


@pytest.fixture(scope="session")
def connect_server(tmp_path_factory):
    """One local Spark Connect server (with Delta) on 127.0.0.1 for the whole test run."""
    from fashion_catalog.lakehouse.local_cluster import ConnectServer

    server = ConnectServer(str(tmp_path_factory.mktemp("connect-server")))
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


@pytest.fixture
def workspace(tmp_path, tiny_model_dir):
    """A fresh storage root (tables, checkpoint) for one test, and a config factory bound to it."""
    root = tmp_path / f"ws-{uuid.uuid4().hex[:8]}"
    root.mkdir()

    class Workspace:
        path = str(root)

        def config(self, **overrides):
            return make_config(str(root), tiny_model_dir, **overrides)

    yield Workspace()
    shutil.rmtree(root, ignore_errors=True)
