"""``model.precision: auto``: every path timed on the probe set, the fastest faithful one chosen, the choice cached."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from fashion_catalog.encoders import calibrate
from fashion_catalog.encoders.clip import ClipEncoder
from fashion_catalog.encoders.probe import probe_images, probe_texts


def test_the_probe_set_is_fixed_and_product_like():
    a, b = probe_images(4), probe_images(4)
    assert [np.asarray(x).tobytes() for x in a] == [np.asarray(x).tobytes() for x in b]
    assert all(x.size == (224, 224) and x.mode == "RGB" for x in a)
    assert len({np.asarray(x).tobytes() for x in probe_images()}) == 32
    texts = probe_texts()
    assert texts == probe_texts() and len(set(texts)) == 64
    assert all(" price" in t and "wear" in t for t in texts)


def test_best_is_the_fastest_faithful_path_and_fp32_when_none_is():
    rows = [{"precision": "fp32", "products_per_s": 10, "faithful": True},
            {"precision": "int8", "products_per_s": 50, "faithful": False},
            {"precision": "bf16", "products_per_s": 20, "faithful": True},
            {"precision": "openvino-bf16", "error": "RuntimeError: no", "faithful": False}]
    assert calibrate.best(rows) == "bf16"
    assert calibrate.best([{"precision": "int8", "products_per_s": 50, "faithful": False}]) == "fp32"


def test_auto_times_every_cpu_path_picks_a_faithful_one_and_caches_it(tiny_model_dir, tmp_path, monkeypatch,
                                                                     caplog):
    monkeypatch.setenv(calibrate.CACHE_ENV, str(tmp_path))
    caplog.set_level(logging.INFO, logger="fashion_catalog.encoders.calibrate")
    enc = ClipEncoder(tiny_model_dir, precision="auto", torch_threads=1)
    rows = {r["precision"]: r for r in enc.calibration}
    # Every CPU back-end of the registry, the fp32 reference first (conf/precisions.py).
    assert list(rows) == ["fp32", "bf16", "int8", "openvino-bf16", "openvino-int8"]
    for row in rows.values():
        assert "error" not in row, row
        assert row["images_per_s"] > 0 and row["texts_per_s"] > 0, row
        # The documented contract (README, model.precision): faithful means cosine >= 0.999 to fp32 on the probes.
        assert row["faithful"] == (min(row["image_cosine_min"], row["text_cosine_min"]) >= 0.999)
    assert rows["fp32"]["image_cosine_min"] == 1.0
    chosen = enc.precision
    assert rows[chosen]["faithful"]  # which one wins is test_auto_picks_the_answer_of_a_hand_made_table's
    assert f"model.precision auto -> {chosen}" in caplog.text
    # The chosen path is the one that encodes, and its vectors stay close to fp32's.
    texts = probe_texts(8)
    ref = ClipEncoder(tiny_model_dir, precision="fp32", torch_threads=1)
    assert (ref.encode_texts(texts) * enc.encode_texts(texts)).sum(1).min() >= calibrate.MIN_COSINE
    # The next process on this machine reads the table instead of timing again.
    [cached] = list(tmp_path.glob("*.json"))
    assert json.loads(cached.read_text())["rows"] == enc.calibration
    monkeypatch.setattr(calibrate, "calibrate", lambda *a: pytest.fail("calibrated again"))
    again = ClipEncoder(tiny_model_dir, precision="auto", torch_threads=1)
    assert again.precision == chosen


def test_a_path_that_fails_here_is_reported_and_skipped(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(calibrate.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(calibrate, "candidates", lambda device: ("fp32", "openvino-int8"))
    import fashion_catalog.encoders.openvino_towers as ov

    def broken(*args, **kwargs):
        raise RuntimeError("no OpenVINO CPU plugin here")

    monkeypatch.setattr(ov, "OpenVinoTowers", broken)
    enc = ClipEncoder(tiny_model_dir, precision="auto", torch_threads=1)
    assert enc.precision == "fp32"
    assert enc.calibration[1] == {"precision": "openvino-int8", "faithful": False,
                                  "error": "RuntimeError: no OpenVINO CPU plugin here"}


def test_auto_picks_the_answer_of_a_hand_made_table(tiny_model_dir, tmp_path, monkeypatch):
    """Timings made up by hand, the winner picked by hand: the fastest path whose vectors stay within cosine
    0.999 of fp32's. int8 is fastest but unfaithful here, openvino-int8 fails to build: openvino-bf16 wins."""
    table = {
        "fp32": {"images_per_s": 10.0, "texts_per_s": 30.0, "products_per_s": 7.5, "image_cosine_min": 1.0,
                 "text_cosine_min": 1.0},
        "bf16": {"images_per_s": 2.0, "texts_per_s": 6.0, "products_per_s": 1.5, "image_cosine_min": 0.99995,
                 "text_cosine_min": 0.99990},
        "int8": {"images_per_s": 40.0, "texts_per_s": 90.0, "products_per_s": 27.7, "image_cosine_min": 0.9981,
                 "text_cosine_min": 0.9995},
        "openvino-bf16": {"images_per_s": 14.0, "texts_per_s": 40.0, "products_per_s": 10.4,
                          "image_cosine_min": 0.99991, "text_cosine_min": 0.99993},
    }

    def measured(encoder, precision, images, texts, reference):
        if precision not in table:
            raise RuntimeError("no OpenVINO CPU plugin here")
        row = dict(table[precision], precision=precision)
        row["faithful"] = min(row["image_cosine_min"], row["text_cosine_min"]) >= calibrate.MIN_COSINE
        return row, (np.zeros((1, 1)), np.zeros((1, 1)))

    monkeypatch.setenv(calibrate.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(calibrate, "measure", measured)
    enc = ClipEncoder(tiny_model_dir, precision="auto", torch_threads=1)
    assert enc.precision == "openvino-bf16"
    assert [r["precision"] for r in enc.calibration] == ["fp32", "bf16", "int8", "openvino-bf16", "openvino-int8"]
