"""The inference back-ends of the encoder: one registry, ``name -> (devices, builder)``.

Everything that names a ``model.precision`` reads it from here: the configuration's allowed
values and its device check, ``model.precision: auto``'s candidates
(``fashion_catalog.encoders.calibrate``), and the encoder, which builds the named back-end's
``Towers`` (``fashion_catalog.encoders.towers.build_towers``). The builder is named as
``module:Class`` (as console scripts name their entry points), so this bottom-layer module
imports no model code.
"""

from __future__ import annotations

from dataclasses import dataclass

AUTO = "auto"


@dataclass(frozen=True)
class Precision:
    """One inference back-end: the devices it runs on, who runs it, and the Towers class that builds it."""

    name: str
    devices: tuple[str, ...]
    runtime: str
    towers: str  # "module:Class" of its fashion_catalog.encoders Towers back-end
    compute: str  # the arithmetic its back-end runs: fp32, bf16, fp16 or int8
    note: str = ""


_TORCH = "fashion_catalog.encoders.towers:TorchTowers"
_OPENVINO = "fashion_catalog.encoders.openvino_towers:OpenVinoTowers"
PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    # fp32 first: the reference every other candidate is measured against.
    Precision("fp32", ("cpu", "cuda"), "torch", _TORCH, "fp32", "the reference"),
    Precision("bf16", ("cpu", "cuda"), "torch", _TORCH, "bf16", "torch autocast"),
    Precision("int8", ("cpu",), "ONNX Runtime", "fashion_catalog.encoders.onnx_int8:Int8Towers", "int8",
              "ONNX export, dynamically quantised"),
    Precision("fp16", ("cuda",), "torch", _TORCH, "fp16", "torch autocast, GPU only"),
    Precision("openvino-bf16", ("cpu",), "OpenVINO", _OPENVINO, "bf16", "bf16 inference hint"),
    Precision("openvino-int8", ("cpu",), "OpenVINO", _OPENVINO, "int8", "NNCF post-training int8"),
)}
PRECISION_NAMES: tuple[str, ...] = (*PRECISIONS, AUTO)
_DEVICE_WORDS = {"cpu": "CPU", "cuda": "a GPU"}


def device_error(precision: str, device: str) -> str | None:
    """Why ``precision`` cannot run on ``device`` (one line saying what to set), or None when it can."""
    if precision == AUTO or device in PRECISIONS[precision].devices:
        return None
    p = PRECISIONS[precision]
    runtime = "" if p.runtime == "torch" else f" ({p.runtime})"
    where = " or ".join(_DEVICE_WORDS[d] for d in p.devices)
    return f"precision {precision}{runtime} runs on {where} only: set model.device={p.devices[0]}"


def candidates(device: str) -> tuple[str, ...]:
    """The precisions ``auto`` measures on ``device``, the reference (fp32) first."""
    return tuple(name for name, p in PRECISIONS.items() if device in p.devices)
