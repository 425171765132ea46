"""The OpenVINO inference paths: CLIP's towers converted from PyTorch and compiled for this CPU.

``model.precision: openvino-bf16`` compiles the fp32 towers with OpenVINO's bf16 inference
hint (AVX-512 BF16 or AMX where the processor has them; OpenVINO keeps f32 where it has not).
``openvino-int8`` quantises the image tower with NNCF post-training quantisation, calibrated on
the probe photos of :mod:`encoders.probe` (transformer-aware preset), and the text tower's weights
only (see :func:`_quantize`). The converted (and quantised) models are saved once per model
(``<model>/openvino-<precision>/``, else ``~/.cache``, like the ONNX export): quantising ViT-B/32
takes ~40 s on 2 cores, and every Spark Python worker that loads the encoder then only reads the
IR and compiles it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

import numpy as np

from fashion_catalog.conf.precisions import PRECISIONS
from fashion_catalog.encoders.towers import TowerInputs, tower_modules

log = logging.getLogger(__name__)



class OpenVinoTowers:
    """Compiled OpenVINO text and image towers of one CLIP (``encode_text`` / ``encode_image`` on numpy)."""

    def __init__(self, inputs: TowerInputs):
        model, name_or_path, precision, threads = inputs.model, inputs.name_or_path, inputs.precision, inputs.threads
        example_ids, example_pixels = inputs.example_ids, inputs.example_pixels
        try:
            import openvino as ov
        except ImportError as exc:  # pragma: no cover - it is a pinned requirement
            raise RuntimeError(f"model.precision {precision} needs openvino (pip install openvino nncf)") from exc
        import torch

        if PRECISIONS[precision].runtime != "OpenVINO":
            raise ValueError(f"not an OpenVINO precision: {precision!r}")
        compute = PRECISIONS[precision].compute

        saved = _saved_models(name_or_path, precision)
        if saved is not None:
            text, image = saved
        else:
            text_tower, image_tower = tower_modules(model)
            ids = example_ids.to(torch.int64)
            with torch.inference_mode():
                text = ov.convert_model(text_tower, example_input=(ids, torch.ones_like(ids)),
                                        input=[("input_ids", ov.PartialShape([-1, -1]), ov.Type.i64),
                                               ("attention_mask", ov.PartialShape([-1, -1]), ov.Type.i64)])
                image = ov.convert_model(image_tower, example_input=(example_pixels,),
                                         input=[("pixel_values", ov.PartialShape([-1, *example_pixels.shape[1:]]),
                                                 ov.Type.f32)])
            if compute == "int8":
                text, image = _quantize(text, image, inputs.calibration() if inputs.calibration else None)
            _save_models(name_or_path, precision, text, image)
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if compute == "bf16":
            config["INFERENCE_PRECISION_HINT"] = "bf16"
        core = ov.Core()
        self.text = core.compile_model(text, "CPU", config)
        self.image = core.compile_model(image, "CPU", config)
        self.precision = precision
        log.info("OpenVINO %s towers compiled (CPU: %s)", precision,
                 core.get_property("CPU", "FULL_DEVICE_NAME"))

    def encode_text(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.text({"input_ids": input_ids.astype(np.int64),
                          "attention_mask": attention_mask.astype(np.int64)})[0].astype(np.float32)

    def encode_image(self, pixel_values: np.ndarray) -> np.ndarray:
        return self.image({"pixel_values": pixel_values.astype(np.float32)})[0].astype(np.float32)


def _quantize(text, image, calibration: tuple[list, list] | None):
    """int8 towers: the image tower fully quantised (NNCF post-training, calibrated on the probe photos),
    the text tower's weights only (data-free).

    A text tower with int8 activations calibrated on the probe descriptions held cosine 0.9993 on the
    probe but only 0.9957 on real catalogue descriptions (ViT-B/32 shape): token statistics vary more
    than pixel statistics. Weight-only int8 keeps activations in f32 and needs no calibration data.
    """
    import contextlib
    import io

    import nncf

    from fashion_catalog.encoders.onnx_int8 import has_vnni

    if not calibration:
        raise ValueError("openvino-int8 needs calibration inputs (encoders.probe)")
    _token_batches, pixel_batches = calibration
    image_data = nncf.Dataset(pixel_batches, lambda p: {"pixel_values": p.astype(np.float32)})
    # NNCF logs (INFO) and draws progress bars on stdout, which jobs and benchmarks keep for their output.
    logging.getLogger("nncf").setLevel(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()):
        # Without VNNI, int8 kernels can saturate: NNCF's overflow fix (7-bit weights) on every layer.
        advanced = (None if has_vnni() else
                    nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix.ENABLE))
        image = nncf.quantize(image, image_data, subset_size=len(pixel_batches),
                              model_type=nncf.ModelType.TRANSFORMER, preset=nncf.QuantizationPreset.MIXED,
                              advanced_parameters=advanced)
        text = nncf.compress_weights(text, mode=nncf.CompressWeightsMode.INT8_ASYM)
    return text, image


# Bumped whenever the conversion changes, so models saved by an older version are not reused.
IR_VERSION = 2


def _folder(name_or_path: str, precision: str) -> str:
    from fashion_catalog.encoders.onnx_int8 import has_vnni, model_cache_dir

    # An int8 model quantised for a CPU without VNNI (overflow fix) is kept apart from one quantised with it.
    machine = "" if PRECISIONS[precision].compute != "int8" or has_vnni() else "-no-vnni"
    return model_cache_dir(name_or_path, f"{precision}-v{IR_VERSION}{machine}")  # <model>/openvino-int8-v2


def _saved_models_exist(folder: str) -> bool:
    return all(os.path.isfile(os.path.join(folder, f"{tower}.xml")) for tower in ("text", "image"))


def _saved_models(name_or_path: str, precision: str):
    import openvino as ov

    folder = _folder(name_or_path, precision)
    if not _saved_models_exist(folder):
        return None
    core = ov.Core()
    log.info("OpenVINO %s models read from %s", precision, folder)
    return core.read_model(os.path.join(folder, "text.xml")), core.read_model(os.path.join(folder, "image.xml"))


def _save_models(name_or_path: str, precision: str, text, image) -> None:
    import openvino as ov

    folder = _folder(name_or_path, precision)
    try:
        os.makedirs(os.path.dirname(folder) or ".", exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".openvino-", dir=os.path.dirname(folder) or ".")
        ov.save_model(text, os.path.join(tmp, "text.xml"), compress_to_fp16=False)
        ov.save_model(image, os.path.join(tmp, "image.xml"), compress_to_fp16=False)
        os.replace(tmp, folder)  # atomic: a concurrent worker sees all of it or none
    except OSError as exc:
        if "tmp" in locals():
            shutil.rmtree(tmp, ignore_errors=True)
        if _saved_models_exist(folder):
            return  # another process saved them first
        log.warning("could not save the OpenVINO %s models to %s (%s); they are rebuilt at the next load",
                    precision, folder, exc)
