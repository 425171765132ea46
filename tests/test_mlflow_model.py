"""Integration tests: the pyfunc encoder, its registration, a real `mlflow models serve`, and the embedder."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import requests
from PIL import Image

from fashion_catalog.conf import load_config
from fashion_catalog.encoders.clip import ClipEncoder
from fashion_catalog.encoders.endpoint import EndpointEncoder
from fashion_catalog.encoders.registry import register_model
from fashion_catalog.encoders.vectors import hybrid_vector
from fashion_catalog.streaming.runner import Embedder
from tests.helpers import append_products, draw_image, embedding_rows, product, stream_once

TEXTS = ["red party dress", "black leather formal shoes", "blue denim jeans"]


def _png_b64(colour) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def registered(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("mlflow")
    config = load_config("local", base_dir=root, overrides={"model.name_or_path": tiny_model_dir,
                                                            "model.id": "tiny-clip-test"})
    info = register_model(config)
    return config, info



def test_the_setup_job_does_not_register_the_same_model_twice(registered):
    from fashion_catalog.deploy.setup import register_encoder

    config, info = registered
    again = register_encoder(config)  # the alias already serves this source and model id
    assert again == {"model": "unchanged", "registered_model": "clip_multimodal_encoder", "version": "1"}
    assert str(info["version"]) == "1"


def test_a_setup_without_its_model_step_serves_the_version_the_alias_points_at(registered, monkeypatch):
    """A re-run with the model step skipped (after a failed deploy) still points the endpoint at the alias's
    version, and says what to do when the alias points at none."""
    from databricks.sdk import WorkspaceClient

    from fashion_catalog.conf import ConfigError
    from fashion_catalog.deploy import setup
    from tests.vector_search_standin import WorkspaceStandIn

    registered_config, info = registered
    others = tuple(s for s in setup.STEPS if s != "serving")

    def config(alias: str):
        return load_config("local", overrides={
            "mlflow.tracking_uri": registered_config.mlflow.tracking_uri, "mlflow.alias": alias,
            "serving.endpoint_name": "fashion-clip-encoder"})

    with pytest.raises(ConfigError, match="no version of clip_multimodal_encoder has the alias 'staging' to serve"):
        setup.run_setup(config("staging"), skip=others)
    ws = WorkspaceStandIn()
    monkeypatch.setattr(setup, "_workspace", lambda _config: WorkspaceClient(host=ws.url, token=ws.token))
    try:
        [done] = setup.run_setup(config("champion"), skip=others)
        assert (done["serving"], done["version"]) == ("created", str(info["version"]))
        [entity] = ws.serving["fashion-clip-encoder"]["config"]["served_entities"]
        assert (entity["entity_name"], entity["entity_version"]) == ("clip_multimodal_encoder", "1")
    finally:
        ws.close()

@pytest.fixture(scope="module")
def scoring_server(registered, tmp_path_factory):
    """A real MLflow scoring server on loopback for the registered model (on a port it binds itself)."""
    import re

    config, info = registered
    env = dict(os.environ, MLFLOW_TRACKING_URI=config.mlflow.tracking_uri,
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    log_path = tmp_path_factory.mktemp("scoring-server") / "serve.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", info["registered_uri"], "-h", "127.0.0.1",
         "-p", "0", "--env-manager", "local"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base, deadline = None, time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow models serve exited: {log_path.read_text()[-2000:]}")
        found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", log_path.read_text(errors="replace"))
        try:
            if found and requests.get(f"{found.group(1)}/ping", timeout=2).status_code == 200:
                base = found.group(1)
                break
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError(f"mlflow models serve did not become ready in 180 s: {log_path.read_text()[-2000:]}")
    yield f"{base}/invocations"
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def direct(tiny_model_dir):
    return ClipEncoder(tiny_model_dir)


def test_registered_model_accepts_text_only_image_only_mixed_and_reports_bad_rows(registered, direct):
    import mlflow

    config, info = registered
    assert info["registered_model"] == "clip_multimodal_encoder" and info["version"] == 1
    mlflow.set_tracking_uri(config.mlflow.tracking_uri)
    model = mlflow.pyfunc.load_model(info["registered_uri"])
    schema = model.metadata.get_input_schema()
    assert [(c.name, c.required) for c in schema.inputs] == [("text", False), ("image", False)]

    img = _png_b64((200, 20, 20))
    out = model.predict(pd.DataFrame({"text": ["red party dress", None, "red party dress", None, None, None],
                                      "image": [None, img, img, None, "%%%", base64.b64encode(b"nope").decode()]}),
                        params={"text_weight": 0.3})
    t = direct.encode_texts(["red party dress"])[0]
    i = direct.encode_images([Image.open(io.BytesIO(base64.b64decode(img))).convert("RGB")])[0]
    np.testing.assert_allclose(out.embedding[0], t, atol=1e-6)
    np.testing.assert_allclose(out.embedding[1], i, atol=1e-6)
    np.testing.assert_allclose(out.embedding[2], hybrid_vector(t, i, 0.3), atol=1e-6)
    assert list(out.modality[:3]) == ["text", "image", "hybrid"]
    assert out.error[3].startswith("EMPTY_INPUT") and out.error[4].startswith("INVALID_BASE64")
    assert out.error[5].startswith("IMAGE_UNDECODABLE")
    assert out.embedding[3] is None and out.error[:3].isna().all()
    # Text-only and image-only requests (the other column absent) are accepted by the signature.
    assert model.predict(pd.DataFrame({"text": TEXTS})).error.isna().all()
    assert model.predict(pd.DataFrame({"image": [img]})).error.isna().all()


def test_endpoint_encoder_through_the_real_scoring_server(scoring_server, direct):
    enc = EndpointEncoder(scoring_server, token_env=None, batch_size=2, max_concurrency=2)
    images = [Image.new("RGB", (40, 30), c) for c in [(200, 20, 20), (20, 20, 200), (20, 200, 20)]]
    cos_t = (enc.encode_texts(TEXTS) * direct.encode_texts(TEXTS)).sum(1)
    cos_i = (enc.encode_images(images) * direct.encode_images(images)).sum(1)
    assert cos_t.min() >= 0.9999 and cos_i.min() >= 0.9999
    mixed = enc.embed_records([{"text": TEXTS[0]}, {"image": _png_b64((20, 200, 20))},
                               {"text": TEXTS[1], "image": _png_b64((20, 20, 200))}, {}], text_weight=0.7)
    want = [direct.encode_texts([TEXTS[0]])[0], direct.encode_images([images[2]])[0],
            hybrid_vector(direct.encode_texts([TEXTS[1]])[0], direct.encode_images([images[1]])[0], 0.7)]
    for (vec, err), ref in zip(mixed[:3], want, strict=True):
        assert err is None and float(np.dot(vec, ref)) >= 0.9999
    assert mixed[3][0] is None and mixed[3][1].startswith("EMPTY_INPUT")


def test_embedder_with_the_registered_model_matches_the_direct_path(spark, registered, workspace, tmp_path):
    config, info = registered
    imgs = [draw_image(f"{tmp_path}/img/{i}.jpg", i) for i in range(3)]
    rows = [product(i + 1, imgs[i]) for i in range(3)]
    direct_cfg = workspace.config()
    via_mlflow = load_config("local", base_dir=tmp_path / "b", overrides={
        "model.name_or_path": info["registered_uri"], "model.id": "tiny-clip-test", "model.torch_threads": 1,
        "mlflow.tracking_uri": config.mlflow.tracking_uri, "images.allowed_roots": [str(tmp_path)]})
    for cfg in (direct_cfg, via_mlflow):
        append_products(spark, cfg, rows)
        stream_once(Embedder(spark, cfg))
    a, b = embedding_rows(spark, direct_cfg), embedding_rows(spark, via_mlflow)
    assert sorted(a) == sorted(b) == [1, 2, 3]
    for pid in a:
        for col in ("text_embedding", "image_embedding", "hybrid_embedding"):
            np.testing.assert_allclose(getattr(b[pid], col), getattr(a[pid], col), atol=1e-12)


SPARK_BLOCKED = """
import importlib.abc, sys

class NoSpark(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pyspark", "py4j", "delta"):
            raise ImportError(f"{name} is not installed in this serving environment")
        return None

sys.meta_path.insert(0, NoSpark())
try:
    import pyspark  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("pyspark was importable")
import base64, io, json
import mlflow, pandas as pd
from PIL import Image

buf = io.BytesIO()
Image.new("RGB", (40, 30), (200, 20, 20)).save(buf, "PNG")
model = mlflow.pyfunc.load_model(sys.argv[1])
out = model.predict(pd.DataFrame({"text": ["red party dress", None],
                                  "image": [None, base64.b64encode(buf.getvalue()).decode()]}))
assert not any(m.startswith(("pyspark", "py4j", "delta")) for m in sys.modules), "Spark was imported"
print(json.dumps({"modality": list(out.modality), "error": list(out.error),
                  "dims": [len(v) for v in out.embedding]}))
"""


def test_pyfunc_predicts_in_a_process_where_pyspark_cannot_be_imported(registered, tmp_path):
    """The serving environment has no pyspark: loading and predicting must not need it."""
    import json as _json

    config, info = registered
    script = tmp_path / "serve_without_spark.py"
    script.write_text(SPARK_BLOCKED)
    env = dict(os.environ, MLFLOW_TRACKING_URI=config.mlflow.tracking_uri)
    done = subprocess.run([sys.executable, str(script), info["registered_uri"]], env=env, capture_output=True,
                          text=True, timeout=300, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    result = _json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"modality": ["text", "image"], "error": [None, None], "dims": [512, 512]}


def test_registration_points_the_champion_alias_and_the_embedder_loads_it(registered, direct):
    import mlflow

    from fashion_catalog.encoders.factory import EncoderSpec, load_encoder

    config, info = registered
    assert info["alias"] == "champion" and info["alias_uri"] == "models:/clip_multimodal_encoder@champion"
    mlflow.set_tracking_uri(config.mlflow.tracking_uri)
    version = mlflow.MlflowClient().get_model_version_by_alias("clip_multimodal_encoder", "champion")
    assert int(version.version) == info["version"]
    model = mlflow.pyfunc.load_model(info["alias_uri"])
    assert model.metadata.get_input_schema() is not None
    assert model.metadata.saved_input_example_info, "the model was logged without an input example"
    # The embedder takes the alias URI like any model reference (what its UDFs build on each worker).
    spec = EncoderSpec(info["alias_uri"], "fp32", 1, 512, 8, 8, config.mlflow.tracking_uri)
    np.testing.assert_allclose(load_encoder(spec).encode_texts(TEXTS), direct.encode_texts(TEXTS), atol=1e-6)


def test_serving_requirements_are_explicit_pins_without_spark(registered):
    from fashion_catalog.encoders.registry import serving_requirements

    reqs = serving_requirements()
    assert all("==" in r for r in reqs)
    names = {r.split("==")[0].lower() for r in reqs}
    assert {"mlflow", "torch", "transformers", "pillow", "numpy", "pandas"} <= names
    assert not names & {"pyspark", "delta-spark", "py4j"}


def test_register_model_takes_a_folder_or_a_reachable_hub_id_and_says_what_to_stage(monkeypatch, tmp_path):
    import transformers

    from fashion_catalog.encoders.clip import ModelLoadError

    def unreachable(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(transformers.CLIPModel, "from_pretrained", unreachable)
    config = load_config("local", overrides={"storage.root": str(tmp_path)})
    with pytest.raises(ModelLoadError, match=r"could not fetch 'openai/clip-vit-base-patch32'.*stage the folder "
                                             r"on a Volume"):
        register_model(config, model_dir="openai/clip-vit-base-patch32")
    with pytest.raises(ModelLoadError, match=r"is not a folder"):
        register_model(config, model_dir=str(tmp_path / "no-such-model"))
