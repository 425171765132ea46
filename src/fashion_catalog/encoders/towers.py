"""CLIP's two towers behind one declared interface, one class per precision back-end.

:class:`Towers` is what the encoder runs: ``encode_text(input_ids, attention_mask)`` and
``encode_image(pixel_values)`` on numpy arrays, returning raw (unnormalised) features. The back-ends
are :class:`TorchTowers` (fp32, and bf16/fp16 autocast), ``onnx_int8.Int8Towers`` (ONNX Runtime)
and ``openvino_towers.OpenVinoTowers`` (OpenVINO bf16/int8); which one a ``model.precision``
builds, and on which devices it runs, is declared once in
:data:`fashion_catalog.conf.precisions.PRECISIONS` and resolved by :func:`build_towers`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from importlib import import_module
from typing import Protocol

import numpy as np

from fashion_catalog.conf.precisions import PRECISIONS


class Towers(Protocol):
    """A precision back-end of one CLIP's text and image towers."""

    precision: str

    def encode_text(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Text features, one row per sequence (float32, not normalised)."""

    def encode_image(self, pixel_values: np.ndarray) -> np.ndarray:
        """Image features, one row per image (float32, not normalised)."""


@dataclass(frozen=True)
class TowerInputs:
    """What every back-end is built from: the loaded torch CLIP and where and how it runs."""

    model: object  # transformers.CLIPModel, in eval mode
    name_or_path: str  # the model folder: exported back-ends cache their files beside it
    precision: str
    device: str = "cpu"
    threads: int | None = None
    example_ids: object = None  # a token batch (torch), for exporters
    example_pixels: object = None  # a pixel batch (torch), for exporters
    calibration: Callable[[], tuple[list, list]] | None = None  # probe inputs, for calibrated int8


def build_towers(inputs: TowerInputs) -> Towers:
    """The back-end :data:`PRECISIONS` names for ``inputs.precision``."""
    module, name = PRECISIONS[inputs.precision].towers.split(":")
    return getattr(import_module(module), name)(inputs)


class TorchTowers:
    """The torch CLIP itself: fp32, or bf16/fp16 autocast (on the CPU or a GPU)."""

    def __init__(self, inputs: TowerInputs):
        import torch

        self._torch, self.model, self.device, self.precision = torch, inputs.model, inputs.device, inputs.precision
        # fp32 runs as is; bf16 and fp16 autocast the matmuls.
        self._dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(PRECISIONS[inputs.precision].compute)

    def _autocast(self):
        return self._torch.autocast(self.device, dtype=self._dtype) if self._dtype else nullcontext()

    def _on_device(self, array: np.ndarray):
        tensor = self._torch.from_numpy(np.ascontiguousarray(array))
        return tensor if self.device == "cpu" else tensor.to(self.device, non_blocking=True)

    def encode_text(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode(), self._autocast():
            feats = self.model.get_text_features(input_ids=self._on_device(input_ids),
                                                 attention_mask=self._on_device(attention_mask))
        return feats.float().cpu().numpy()

    def encode_image(self, pixel_values: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode(), self._autocast():
            feats = self.model.get_image_features(pixel_values=self._on_device(pixel_values))
        return feats.float().cpu().numpy()


def tower_modules(model):
    """(text, image) ``torch.nn.Module``s: ``text(input_ids, attention_mask)``, ``image(pixel_values)``
    (the shape every exporter, ONNX and OpenVINO, converts)."""
    import torch

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

    return Text(model).eval(), Image(model).eval()
