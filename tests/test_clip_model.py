"""Unit tests: CLIP loading through from_pretrained, vector properties, bf16 fidelity, hybrid."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from fashion_catalog.encoders.clip import ClipEncoder, ModelLoadError, get_encoder
from fashion_catalog.encoders.vectors import hybrid_vector

TEXTS = ["red party dress for women", "black formal leather shoes", "blue denim jeans, casual wear", ""]


def _images():
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 255, (40 + 7 * i, 50, 3), dtype=np.uint8)) for i in range(4)]


def test_loads_saved_model_and_produces_unit_vectors(tiny_model_dir, caplog):
    with caplog.at_level(logging.WARNING):
        enc = ClipEncoder(tiny_model_dir, expected_dimension=512)
    assert "RANDOM WEIGHTS" in caplog.text and tiny_model_dir in caplog.text
    t = enc.encode_texts(TEXTS, batch_size=3)
    i = enc.encode_images(_images(), batch_size=3)
    assert t.shape == (4, 512) and i.shape == (4, 512)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(i, axis=1), 1.0, atol=1e-12)
    # Batching must not change results.
    np.testing.assert_allclose(enc.encode_texts(TEXTS[:1]), t[:1], atol=1e-6)


def test_a_training_start_point_loads_without_the_random_weights_warning(tmp_path, caplog):
    from fashion_catalog.encoders.model_card import read_model_card
    from fashion_catalog.encoders.random_clip import build_random_clip

    folder = build_random_clip(tmp_path / "init", training_start=True)
    assert read_model_card(folder)["weights"] == "random-init"
    with caplog.at_level(logging.INFO):
        ClipEncoder(folder)
    assert "RANDOM WEIGHTS" not in caplog.text and "weights: random-init" in caplog.text


@pytest.mark.parametrize("precision", ["bf16", "int8", "openvino-bf16"])
def test_fast_paths_stay_faithful_to_fp32(tiny_model_dir, precision):
    fp32 = ClipEncoder(tiny_model_dir, precision="fp32")
    fast = ClipEncoder(tiny_model_dir, precision=precision)
    cos_t = (fp32.encode_texts(TEXTS) * fast.encode_texts(TEXTS)).sum(axis=1)
    cos_i = (fp32.encode_images(_images()) * fast.encode_images(_images())).sum(axis=1)
    assert cos_t.min() >= 0.999, cos_t
    assert cos_i.min() >= 0.999, cos_i
    np.testing.assert_allclose(np.linalg.norm(fast.encode_texts(TEXTS), axis=1), 1.0, atol=1e-12)


def test_openvino_int8_is_calibrated_on_the_probe_set_and_stays_close_elsewhere(tiny_model_dir):
    """The image tower is statically quantised (calibrated on the probe photos), the text tower's weights only:
    text stays within 0.999 everywhere; images within 0.999 on the probe set (what ``auto`` checks) and close
    elsewhere (a random tiny model has no typical activations to calibrate for)."""
    from fashion_catalog.encoders.probe import probe_images

    fp32 = ClipEncoder(tiny_model_dir, precision="fp32")
    fast = ClipEncoder(tiny_model_dir, precision="openvino-int8")
    probe = probe_images()
    assert (fp32.encode_images(probe) * fast.encode_images(probe)).sum(axis=1).min() >= 0.999
    cos_t = (fp32.encode_texts(TEXTS) * fast.encode_texts(TEXTS)).sum(axis=1)
    cos_i = (fp32.encode_images(_images()) * fast.encode_images(_images())).sum(axis=1)
    assert cos_t.min() >= 0.999 and cos_i.min() >= 0.95, (cos_t, cos_i)
    np.testing.assert_allclose(np.linalg.norm(fast.encode_images(_images()), axis=1), 1.0, atol=1e-12)


def test_fast_preprocessing_matches_the_clip_image_processor(tiny_model_dir):
    enc = ClipEncoder(tiny_model_dir)
    rng = np.random.default_rng(0)
    for h, w in ((32, 32), (300, 200), (20, 90), (33, 32), (500, 33)):
        img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        ours = enc.preprocess_images([img]).numpy()
        ref = enc.processor.image_processor(images=[img], return_tensors="np")["pixel_values"]
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_dimension_mismatch_is_reported(tiny_model_dir):
    with pytest.raises(ModelLoadError, match="produces 512-d vectors but model.dimension is 768"):
        ClipEncoder(tiny_model_dir, expected_dimension=768)


def test_missing_local_folder_says_what_to_do(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist; build the demo model"):
        ClipEncoder(str(tmp_path / "no-model"))


def test_unreachable_hub_id_says_what_to_do(monkeypatch):
    # Offline mode answers at once instead of retrying a network that is not there.
    import huggingface_hub.constants
    import transformers.utils.hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(transformers.utils.hub, "_is_offline_mode", True)
    with pytest.raises(ModelLoadError, match="point model.name_or_path at the local folder"):
        ClipEncoder("openai/clip-vit-base-patch32-not-cached")


def test_encoder_is_loaded_once_per_process(tiny_model_dir):
    assert get_encoder(tiny_model_dir, "fp32", 1, 512) is get_encoder(tiny_model_dir, "fp32", 1, 512)


def test_hybrid_vector_math():
    t = np.array([1.0, 0.0, 0.0])
    i = np.array([0.0, 1.0, 0.0])
    h = hybrid_vector(t, i, 0.5)
    np.testing.assert_allclose(h, [2**-0.5, 2**-0.5, 0.0])
    np.testing.assert_allclose(hybrid_vector(t, i, 1.0), t)
    np.testing.assert_allclose(hybrid_vector(t, None, 0.3), t)
    np.testing.assert_allclose(np.linalg.norm(hybrid_vector(t, i, 0.8)), 1.0)


def test_the_encoder_matches_an_independent_numpy_clip(tiny_model_dir, tmp_path):
    """The product's encoder (torch, fp32, its own decoding and preprocessing) against CLIP's forward pass
    written again in numpy from the saved weights (tests/reference_clip.py): an oracle that shares no code."""
    from tests.helpers import draw_image
    from tests.reference_clip import ReferenceClip

    reference = ReferenceClip(tiny_model_dir)
    encoder = ClipEncoder(tiny_model_dir, precision="fp32", torch_threads=1)
    texts = ["red dress", "", "Turtle Check Men Navy Blue Shirt, navy blue shirts, apparel for men, casual wear",
             "x" * 400, "é🙂 ünïcode"]
    np.testing.assert_allclose(encoder.encode_texts(texts, batch_size=2), reference.text(texts), atol=1e-5)
    paths = [draw_image(str(tmp_path / f"{i}.jpg"), i) for i in range(3)]
    wide = tmp_path / "wide.png"
    Image.new("RGB", (90, 30), (10, 200, 30)).save(wide)
    paths.append(str(wide))
    from fashion_catalog.encoders.images import ImageLimits, load_image

    images = [load_image(p, ImageLimits(10**7, 10**7)) for p in paths]
    np.testing.assert_allclose(encoder.encode_images(images), reference.images(paths), atol=1e-5)
