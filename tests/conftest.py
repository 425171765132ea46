"""Shared fixtures: one real local Spark + Delta session and one tiny random CLIP per test session."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import uuid

import pytest

from conf import load_config

logging.getLogger("py4j").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A tiny CLIP (random weights, locally built tokenizer) saved with save_pretrained."""
    from encoders.random_clip import build_random_clip

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
    }
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    return load_config("local", overrides=values, base_dir=root)


@pytest.fixture(scope="session")
def spark(session_root, tiny_model_dir):
    """One Delta-enabled local Spark session for the whole test run."""
    from lakehouse.session import get_spark

    os.environ["PYSPARK_PYTHON"] = sys.executable
    config = make_config(session_root, tiny_model_dir)
    session = get_spark(config)
    session.conf.set("spark.sql.shuffle.partitions", "2")
    yield session
    session.stop()


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
