"""The int8 inference path: CLIP's towers exported to ONNX and dynamically quantised.

``model.precision: int8`` runs the text and image towers in onnxruntime with
dynamic int8 weights (about 3x fp32 torch on a 2-core CPU; cosine to fp32 is
checked by a test and the benchmark). The export happens once per model and is
cached next to the model (or under ~/.cache when that folder is read-only).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
import warnings

import numpy as np

from fashion_catalog.encoders.towers import TowerInputs, tower_modules

log = logging.getLogger(__name__)

CACHE_ENV = "FASHION_ONNX_CACHE"


@functools.cache
def has_vnni() -> bool:
    """Whether this CPU has int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI or AMX), from /proc/cpuinfo.

    Without them onnxruntime's u8s8 int8 kernels can saturate their 16-bit intermediates: on an
    AVX2-only EPYC a tiny CLIP's text vectors fell to cosine 0.94 with fp32. Unknown (no
    /proc/cpuinfo): False, the safe answer. Read once per process (the start-up asks it several times).
    """
    from fashion_catalog.encoders.calibrate import cpu_flags

    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def int8_kind() -> str:
    """The cache folder name of this machine's int8 export: unsigned weights (u8u8 kernels) without VNNI."""
    return "onnx-int8" if has_vnni() else "onnx-int8-u8u8"


def model_cache_dir(name_or_path: str, kind: str = "onnx-int8") -> str:
    """Where a model's exported forms live: <model>/<kind>, else ~/.cache/fashion-catalog/onnx/<key>[-<kind>]."""
    local = os.path.isdir(name_or_path)
    suffix = "" if kind == "onnx-int8" else f"-{kind}"
    if os.environ.get(CACHE_ENV):
        base = os.environ[CACHE_ENV]
    elif local and os.access(name_or_path, os.W_OK):
        return os.path.join(name_or_path, kind)
    else:
        base = os.path.join(os.path.expanduser("~"), ".cache", "fashion-catalog", "onnx")
    key = name_or_path
    if local:
        for f in sorted(os.listdir(name_or_path)):
            p = os.path.join(name_or_path, f)
            if os.path.isfile(p):
                key += f"|{f}:{os.path.getsize(p)}:{int(os.path.getmtime(p))}"
    return os.path.join(base, hashlib.sha256(key.encode()).hexdigest()[:16] + suffix)


def _export(model, out_dir: str, example_ids, example_pixels, unsigned_weights: bool) -> None:
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    text_tower, image_tower = tower_modules(model)

    os.makedirs(os.path.dirname(out_dir) or ".", exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".onnx-", dir=os.path.dirname(out_dir) or ".")
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            text_tower, (example_ids, torch.ones_like(example_ids)), os.path.join(tmp, "text.fp32.onnx"),
            input_names=["input_ids", "attention_mask"], output_names=["embedding"], opset_version=17,
            dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                          "embedding": {0: "batch"}}, dynamo=False,
        )
        torch.onnx.export(
            image_tower, (example_pixels,), os.path.join(tmp, "image.fp32.onnx"),
            input_names=["pixel_values"], output_names=["embedding"], opset_version=17,
            dynamic_axes={"pixel_values": {0: "batch"}, "embedding": {0: "batch"}}, dynamo=False,
        )
    for tower in ("text", "image"):
        # Without VNNI, u8s8 kernels saturate; onnxruntime's u8u8 kernels (unsigned weights) do not.
        quantize_dynamic(os.path.join(tmp, f"{tower}.fp32.onnx"), os.path.join(tmp, f"{tower}.int8.onnx"),
                         weight_type=QuantType.QUInt8 if unsigned_weights else QuantType.QInt8, per_channel=True)
        os.remove(os.path.join(tmp, f"{tower}.fp32.onnx"))
    try:
        os.replace(tmp, out_dir)  # atomic: a concurrent worker either sees all of it or none
    except OSError:
        # Another worker finished first; use theirs.
        for f in os.listdir(tmp):
            os.remove(os.path.join(tmp, f))
        os.rmdir(tmp)


class Int8Towers:
    """onnxruntime sessions for the quantised text and image towers of one CLIP."""

    precision = "int8"

    def __init__(self, inputs: TowerInputs):
        model, name_or_path, threads = inputs.model, inputs.name_or_path, inputs.threads
        example_ids, example_pixels = inputs.example_ids, inputs.example_pixels
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - it is a pinned requirement
            raise RuntimeError("model.precision int8 needs onnxruntime (pip install onnxruntime onnx)") from exc
        kind = int8_kind()
        self.dir = model_cache_dir(name_or_path, kind)
        if not (os.path.isfile(os.path.join(self.dir, "text.int8.onnx"))
                and os.path.isfile(os.path.join(self.dir, "image.int8.onnx"))):
            log.info("exporting %s to ONNX and quantising to int8 in %s", name_or_path, self.dir)
            _export(model, self.dir, example_ids, example_pixels, unsigned_weights=kind != "onnx-int8")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        self.text = ort.InferenceSession(os.path.join(self.dir, "text.int8.onnx"), options, providers=providers)
        self.image = ort.InferenceSession(os.path.join(self.dir, "image.int8.onnx"), options, providers=providers)

    def encode_text(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.text.run(None, {"input_ids": input_ids.astype(np.int64),
                                    "attention_mask": attention_mask.astype(np.int64)})[0]

    def encode_image(self, pixel_values: np.ndarray) -> np.ndarray:
        return self.image.run(None, {"pixel_values": pixel_values.astype(np.float32)})[0]
