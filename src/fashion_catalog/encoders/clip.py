"""Load a CLIP model once per process and encode texts and images with it.

The real loading path (``CLIPModel.from_pretrained`` on a hub id or a local
folder) is the only path: tests build a tiny CLIP, save it with
``save_pretrained`` and load it back through here. A folder may carry a
``model_card.json`` saying how its weights were made; random weights are
announced loudly so nobody mistakes a demo model for a real one.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Sequence

import numpy as np

from fashion_catalog.conf import ActionableError
from fashion_catalog.conf.precisions import device_error
from fashion_catalog.encoders.model_card import read_model_card
from fashion_catalog.encoders.towers import TorchTowers, TowerInputs, Towers, build_towers
from fashion_catalog.encoders.vectors import l2_normalize

log = logging.getLogger(__name__)


class ModelLoadError(ActionableError, RuntimeError):
    """The configured CLIP model could not be loaded."""


class ClipEncoder:
    """A CLIP text and image encoder producing L2-normalised float64 vectors."""

    def __init__(
        self,
        name_or_path: str,
        precision: str = "fp32",
        torch_threads: int | None = None,
        expected_dimension: int | None = None,
        device: str = "cpu",
    ):
        import torch
        from transformers import CLIPModel, CLIPProcessor

        if torch_threads:
            torch.set_num_threads(torch_threads)
        if device == "cuda" and not torch.cuda.is_available():
            raise ModelLoadError("model.device is cuda but torch sees no CUDA device on this machine "
                                 f"(torch {torch.__version__}); use model.device=cpu or a GPU machine")
        problem = device_error(precision, device)
        if problem:
            raise ModelLoadError(f"model.{problem}")
        local = os.path.isdir(name_or_path)
        if not local and name_or_path.startswith(("/", ".")):
            raise ModelLoadError(
                f"model folder {name_or_path!r} does not exist; build the demo model with "
                "`python -m fashion_catalog.jobs.demo` or set model.name_or_path to a CLIP saved with save_pretrained()"
            )
        try:
            self.model = CLIPModel.from_pretrained(name_or_path, local_files_only=local).eval()
            self.processor = CLIPProcessor.from_pretrained(name_or_path, local_files_only=local, use_fast=False)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"could not load CLIP from {name_or_path!r} ({exc.__class__.__name__}: {exc}). "
                "Without access to the Hugging Face hub, download the model elsewhere and point "
                "model.name_or_path at the local folder."
            ) from exc
        self.name_or_path = name_or_path
        self.precision = "fp32"
        self.device = device
        if device != "cpu":
            # fp32 weights on the GPU: the fp16/bf16 back-ends autocast the matmuls there.
            self.model.to(device)
        self.dimension = int(self.model.config.projection_dim)
        if expected_dimension and self.dimension != expected_dimension:
            raise ModelLoadError(
                f"{name_or_path!r} produces {self.dimension}-d vectors but model.dimension is "
                f"{expected_dimension}; fix model.dimension or the model"
            )
        self.max_text_tokens = int(self.model.config.text_config.max_position_embeddings)
        card = read_model_card(name_or_path) if local else {"weights": "pretrained (hub)"}
        self.weights = str(card.get("weights", "unknown (no model_card.json)"))
        message = (
            f"CLIP loaded from {name_or_path} (weights: {self.weights}, dim {self.dimension}, "
            f"precision {precision}, device {device}, pid {os.getpid()})"
        )
        if self.weights == "random":
            log.warning("%s -- RANDOM WEIGHTS: vectors carry no meaning, demo/plumbing only", message)
        else:
            log.info(message)
        self._torch = torch
        self._image_config = self._read_image_config()
        self._threads = torch_threads
        self._towers: Towers = TorchTowers(TowerInputs(self.model, name_or_path, "fp32", device, torch_threads))
        self.calibration: list[dict] | None = None
        if precision == "auto":
            from fashion_catalog.encoders.calibrate import choose_precision

            self.calibration, chosen = choose_precision(self)
            log.info("model.precision auto chose %s on this machine", chosen)
        else:
            self.use_precision(precision)

    def use_precision(self, precision: str) -> None:
        """Switch the inference back-end to the one :data:`PRECISIONS` names for ``precision`` (see towers.py)."""
        size = self._image_config["crop"]
        example_ids = self.processor.tokenizer(["a red dress"], return_tensors="pt")["input_ids"]
        self._towers = build_towers(TowerInputs(
            self.model, self.name_or_path, precision, self.device, self._threads, example_ids,
            self._torch.zeros(2, 3, size[0], size[1]), calibration=self.probe_inputs))
        self.precision = precision

    @property
    def logit_scale(self) -> float:
        """CLIP's learned temperature (``exp(logit_scale)``), for zero-shot logits."""
        return float(self.model.logit_scale.exp().item())

    def probe_inputs(self, batch_size: int = 16) -> tuple[list, list]:
        """The probe set (:mod:`encoders.probe`) as model inputs: token batches and pixel batches."""
        from fashion_catalog.encoders.probe import probe_images, probe_texts

        texts, images = probe_texts(), probe_images()
        tokens = []
        for start in range(0, len(texts), batch_size):
            t = self.processor.tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                                         max_length=self.max_text_tokens, return_tensors="np")
            tokens.append((t["input_ids"], t["attention_mask"]))
        pixels = [self.preprocess_images(images[start:start + batch_size]).numpy()
                  for start in range(0, len(images), batch_size)]
        return tokens, pixels

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the pixel tensors :meth:`preprocess_images` makes."""
        return self._image_config["crop"]

    def _read_image_config(self) -> dict:
        ip = self.processor.image_processor
        size = ip.size or {}
        crop = ip.crop_size or {}
        shortest = size.get("shortest_edge") or min(size.get("height", 224), size.get("width", 224))
        return {
            "shortest_edge": int(shortest),
            "crop": (int(crop.get("height", shortest)), int(crop.get("width", shortest))),
            "mean": np.asarray(ip.image_mean, dtype=np.float32).reshape(1, 3, 1, 1),
            "std": np.asarray(ip.image_std, dtype=np.float32).reshape(1, 3, 1, 1),
            "resample": ip.resample,
            "scale": float(ip.rescale_factor),
        }

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Encode texts to an (n, dim) array of unit vectors (in input order).

        Texts are batched by length so each batch pads to similar lengths; the
        result is put back in input order.
        """
        texts = [t if t else "" for t in texts]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = []
        for start in range(0, len(texts), batch_size):
            chunk = [texts[i] for i in order[start : start + batch_size]]
            tokens = self.processor.tokenizer(
                chunk, padding=True, truncation=True, max_length=self.max_text_tokens, return_tensors="np"
            )
            out.append(self._towers.encode_text(tokens["input_ids"], tokens["attention_mask"]))
        if not out:
            return np.zeros((0, self.dimension))
        vectors = np.empty((len(texts), self.dimension), dtype=np.float64)
        vectors[order] = np.concatenate(out)
        return l2_normalize(vectors)

    def preprocess_images(self, images: Sequence) -> object:
        """Pixel tensor for RGB PIL images: CLIPImageProcessor's resize, centre crop and normalisation.

        Same arithmetic as the processor (a test holds them equal), done on the PIL
        image and one batched numpy normalisation: ~3x faster per image.
        """
        cfg = self._image_config
        crop_h, crop_w = cfg["crop"]
        arrays = []
        for img in images:
            w, h = img.size
            short = cfg["shortest_edge"]
            if (w <= h and w != short) or (h < w and h != short):
                if w <= h:
                    new_w, new_h = short, int(short * h / w)
                else:
                    new_w, new_h = int(short * w / h), short
                img = img.resize((new_w, new_h), resample=cfg["resample"])
                w, h = new_w, new_h
            top, left = int((h - crop_h) / 2), int((w - crop_w) / 2)
            if (w, h) != (crop_w, crop_h):
                img = img.crop((left, top, left + crop_w, top + crop_h))
            arrays.append(np.asarray(img, dtype=np.uint8))
        batch = np.stack(arrays).astype(np.float32).transpose(0, 3, 1, 2) * np.float32(cfg["scale"])
        return self._torch.from_numpy((batch - cfg["mean"]) / cfg["std"])

    def encode_pixels(self, pixel_values) -> np.ndarray:
        """Encode an already preprocessed pixel batch (a CPU tensor or array), raw features."""
        return self._towers.encode_image(np.asarray(pixel_values))

    def encode_images(self, images: Sequence, batch_size: int = 32) -> np.ndarray:
        """Encode RGB PIL images to an (n, dim) array of unit vectors."""
        out = [
            self.encode_pixels(self.preprocess_images(images[start : start + batch_size]))
            for start in range(0, len(images), batch_size)
        ]
        if not out:
            return np.zeros((0, self.dimension))
        return l2_normalize(np.concatenate(out))


_CACHE: dict[tuple, ClipEncoder] = {}
_LOCK = threading.Lock()


def get_encoder(
    name_or_path: str, precision: str = "fp32", torch_threads: int | None = None, expected_dimension: int | None = None,
    device: str = "cpu",
) -> ClipEncoder:
    """The process-wide encoder for these settings, loaded on first use only."""
    key = (name_or_path, precision, torch_threads, expected_dimension, device)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = ClipEncoder(name_or_path, precision, torch_threads, expected_dimension, device)
        return _CACHE[key]
