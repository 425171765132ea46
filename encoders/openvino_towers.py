"""The OpenVINO inference paths: CLIP's towers converted from PyTorch and compiled for this CPU.

``model.precision: openvino-bf16`` compiles the fp32 towers with OpenVINO's bf16 inference
hint (AVX-512 BF16 or AMX where the processor has them; OpenVINO keeps f32 where it has not).
``openvino-int8`` quantises both towers with NNCF post-training quantisation, calibrated on
the fixed probe set of :mod:`encoders.probe` (the same inputs the fidelity check uses), with
the transformer-aware preset. Conversion happens in memory when the encoder loads (seconds
for a small CLIP, under a minute for ViT-B/32); nothing is written next to the model.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

OPENVINO_PRECISIONS = ("openvino-bf16", "openvino-int8")


class OpenVinoTowers:
    """Compiled OpenVINO text and image towers of one CLIP (``encode_text`` / ``encode_image`` on numpy)."""

    def __init__(self, model, precision: str, threads: int | None, example_ids, example_pixels,
                 calibration: tuple[list, list] | None = None):
        try:
            import openvino as ov
        except ImportError as exc:  # pragma: no cover - it is a pinned requirement
            raise RuntimeError(f"model.precision {precision} needs openvino (pip install openvino nncf)") from exc
        import torch

        if precision not in OPENVINO_PRECISIONS:
            raise ValueError(f"not an OpenVINO precision: {precision!r}")

        class Text(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask):
                return self.m.get_text_features(input_ids=input_ids, attention_mask=attention_mask)

        class Image(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, pixel_values):
                return self.m.get_image_features(pixel_values=pixel_values)

        ids = example_ids.to(torch.int64)
        with torch.inference_mode():
            text = ov.convert_model(Text(model).eval(), example_input=(ids, torch.ones_like(ids)),
                                    input=[("input_ids", ov.PartialShape([-1, -1]), ov.Type.i64),
                                           ("attention_mask", ov.PartialShape([-1, -1]), ov.Type.i64)])
            image = ov.convert_model(Image(model).eval(), example_input=(example_pixels,),
                                     input=[("pixel_values", ov.PartialShape([-1, *example_pixels.shape[1:]]),
                                             ov.Type.f32)])
        if precision == "openvino-int8":
            text, image = _quantize(text, image, calibration)
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if precision == "openvino-bf16":
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
    """NNCF post-training int8 of both towers on the probe inputs (token batches, pixel batches)."""
    import nncf

    if not calibration:
        raise ValueError("openvino-int8 needs calibration inputs (encoders.probe)")
    token_batches, pixel_batches = calibration
    text_data = nncf.Dataset(token_batches, lambda t: {"input_ids": t[0].astype(np.int64),
                                                       "attention_mask": t[1].astype(np.int64)})
    image_data = nncf.Dataset(pixel_batches, lambda p: {"pixel_values": p.astype(np.float32)})
    kwargs = {"model_type": nncf.ModelType.TRANSFORMER, "preset": nncf.QuantizationPreset.MIXED}
    text = nncf.quantize(text, text_data, subset_size=len(token_batches), **kwargs)
    image = nncf.quantize(image, image_data, subset_size=len(pixel_batches), **kwargs)
    return text, image
