"""The GPU path where no GPU is: clear refusals, and bench/gpu_throughput.py checked end to end on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from fashion_catalog.catalog.demo import generate_demo_catalog
from fashion_catalog.conf import ConfigError, load_config
from fashion_catalog.lakehouse.local_cluster import loopback_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_settings_are_validated_and_a_missing_gpu_is_said_plainly(tiny_model_dir):
    import torch

    from fashion_catalog.encoders.clip import ClipEncoder, ModelLoadError

    with pytest.raises(ConfigError, match="fp16 runs on a GPU only"):
        load_config("local", overrides={"model.precision": "fp16"})
    with pytest.raises(ConfigError, match="int8 .* runs on CPU only"):
        load_config("local", overrides={"model.precision": "int8", "model.device": "cuda"})
    assert load_config("local", overrides={"model.precision": "fp16", "model.device": "cuda"}).model.device == "cuda"
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="no CUDA device"):
            ClipEncoder(tiny_model_dir, precision="fp16", device="cuda")


def test_fast_decode_keeps_at_least_the_model_size(tmp_path):
    from bench.gpu_throughput import fast_decode

    path = tmp_path / "big.jpg"
    Image.new("RGB", (1800, 2400), (200, 30, 30)).save(path, "JPEG")
    img = fast_decode(str(path), 224)
    assert img.mode == "RGB" and min(img.size) >= 224 and img.size[0] < 1800  # decoded at a reduced scale


@pytest.mark.slow
def test_the_gpu_benchmark_runs_on_cpu_with_a_tiny_model(tmp_path):
    catalog = generate_demo_catalog(str(tmp_path / "catalog"), n_products=12)
    cmd = [sys.executable, "-m", "bench.gpu_throughput", "--device", "cpu", "--precision", "fp32", "--shape", "tiny",
           "--batch-size", "4", "--decode-workers", "2", "--sample-dir", catalog, "--work-dir", str(tmp_path / "w")]
    done = subprocess.run(cmd, env=loopback_env(), capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout[done.stdout.index("{"):])
    # What was run: the settings asked for, on this machine.
    assert {k: result[k] for k in ("benchmark", "device", "precision", "batch_size", "decode_workers", "gpu")} == {
        "benchmark": "gpu_throughput", "device": "cpu", "precision": "fp32", "batch_size": 4, "decode_workers": 2,
        "gpu": None}
    assert result["model_shape"] == "clip-tiny (random weights)" and result["cpu_count"] == os.cpu_count()
    assert result["images"] == 11  # the demo catalog of 12 has one product without an image file
    rates = ("decode_images_per_s", "model_images_per_s", "raw_images_per_s", "texts_per_s")
    assert all(isinstance(result[k], float) and 0 < result[k] < 1e6 for k in rates), {k: result[k] for k in rates}
    e2e = result["e2e"]
    assert (e2e["images_encoded"], e2e["texts_encoded"], e2e["products"]) == (11, 12, 12)
    # The ratios are the end-to-end rates over the raw ones, as stated.
    assert result["ratio_images_e2e_over_raw"] == pytest.approx(e2e["images_per_s"] / result["raw_images_per_s"],
                                                                abs=1e-3)
    assert result["ratio_texts_e2e_over_raw"] == pytest.approx(e2e["texts_per_s"] / result["texts_per_s"], abs=1e-3)
    assert 0 < result["ratio_images_e2e_over_raw"] < 10 and 0 < result["ratio_texts_e2e_over_raw"] < 10
