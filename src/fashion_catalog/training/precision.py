"""``training.precision: auto``: time fp32 and bf16 training steps on the model being trained, keep the faster
one that trains stably.

bf16 autocast is a win only where the processor multiplies bf16 natively (AVX-512 BF16, AMX). Elsewhere torch
falls back to a reference GEMM in the backward pass: on a 2-vCPU AVX2-only EPYC a step took 80-87 s against
3.5 s in fp32, so a wall-clock budget trained ~20 steps. At the start of a run, a copy of the model takes a few
optimisation steps on one real batch in each precision (one warm-up step, then timed ones); a precision whose
losses are not finite, or whose first loss strays from fp32's on the same batch, is not stable. The winner is
cached per processor, core count, torch version and model shape, like the inference calibration
(:mod:`fashion_catalog.encoders.calibrate`), so the next run on this machine measures nothing.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Callable

from fashion_catalog.encoders.calibrate import cache_dir, cpu_flags, processor_name

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")
# The measuring batch: enough rows for the GEMMs to take their real code path, few enough that a slow
# precision costs seconds, not minutes.
PROBE_BATCH = 32
TIMED_STEPS = 2
# A precision whose first timed step is this many times slower than fp32's is not timed further.
HOPELESS = 4.0
# bf16's first loss on the shared batch may differ from fp32's by this fraction (rounding) and no more.
MAX_LOSS_DRIFT = 0.05


@dataclass
class StepTiming:
    """One precision's measured training steps."""

    precision: str
    seconds_per_step: float
    samples_per_s: float
    first_loss: float
    stable: bool
    note: str = ""


@dataclass
class PrecisionChoice:
    """What a run trains with, and the measurements it was chosen on."""

    requested: str
    chosen: str
    timings: list[StepTiming]
    native_bf16: bool
    cached: bool = False

    def steps_per_s(self) -> dict[str, float]:
        return {t.precision: round(1.0 / t.seconds_per_step, 4) for t in self.timings if t.seconds_per_step > 0}

    def mlflow_params(self) -> dict[str, object]:
        params: dict[str, object] = {"precision_requested": self.requested, "precision": self.chosen,
                                     "native_bf16": self.native_bf16, "precision_probe_batch": PROBE_BATCH}
        for t in self.timings:
            params[f"precision_{t.precision}_samples_per_s"] = round(t.samples_per_s, 2)
        return params

    def summary(self) -> str:
        rates = ", ".join(f"{t.precision} {t.samples_per_s:.1f} samples/s{'' if t.stable else ' (unstable)'}"
                          for t in self.timings)
        source = "cached measurement" if self.cached else "measured now"
        return f"training precision {self.requested} -> {self.chosen} ({rates}; {source})"


def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX-512 BF16 or AMX), from /proc/cpuinfo; unknown: False."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def autocast(torch, precision: str):
    """The autocast context of a training step in ``precision`` (CPU)."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def time_steps(torch, model, make_optimizer: Callable, step: Callable, precision: str,
               fp32_seconds: float | None = None) -> StepTiming:
    """Train a copy of ``model`` for a warm-up step and up to :data:`TIMED_STEPS` timed ones in ``precision``.

    ``step(model, optimizer, autocast) -> loss`` runs one optimisation step on the probe batch. The copy keeps
    the real model's weights untouched; the same batch every time keeps the runs comparable.
    """
    trial = copy.deepcopy(model)
    trial.train()
    optim = make_optimizer(trial)
    context = autocast(torch, precision)
    t0 = time.perf_counter()
    first = float(step(trial, optim, context))  # the first step allocates and picks kernels: not timed...
    warm_s = time.perf_counter() - t0
    losses, seconds = [first], []
    if fp32_seconds and warm_s > 2 * HOPELESS * fp32_seconds:
        # ...unless it alone shows the precision losing by far (bf16 without native bf16: a fine-tuned ViT-B/32
        # step there takes minutes); it then stands for the rate, an overestimate that only confirms the loss.
        seconds.append(warm_s)
    for _ in range(TIMED_STEPS if not seconds else 0):
        t0 = time.perf_counter()
        losses.append(float(step(trial, optim, context)))
        seconds.append(time.perf_counter() - t0)
        if fp32_seconds and seconds[-1] > HOPELESS * fp32_seconds:
            break  # clearly slower: one timed step says enough
    per_step = sum(seconds) / len(seconds)
    stable = all(math.isfinite(v) for v in losses)
    del trial, optim
    return StepTiming(precision, round(per_step, 4), round(PROBE_BATCH / per_step, 2), round(first, 5), stable)


def pick(timings: list[StepTiming]) -> str:
    """The fastest stable precision whose first loss agrees with fp32's on the same batch (fp32 otherwise)."""
    reference = next((t for t in timings if t.precision == "fp32"), None)
    usable = []
    for t in timings:
        agrees = reference is None or abs(t.first_loss - reference.first_loss) <= MAX_LOSS_DRIFT * max(
            abs(reference.first_loss), 1e-6)
        if t.stable and agrees:
            usable.append(t)
        elif t.stable:
            t.stable, t.note = False, f"first loss {t.first_loss} vs fp32 {reference.first_loss}"
    return min(usable, key=lambda t: t.seconds_per_step).precision if usable else "fp32"


def _cache_path(torch, model, shape: str) -> str:
    params = sum(p.numel() for p in model.parameters())
    key = ["train-precision-v1", processor_name(), f"native_bf16={native_bf16()}", str(os.cpu_count()),
           str(torch.get_num_threads()), torch.__version__, f"params={params}", shape, f"batch={PROBE_BATCH}"]
    return os.path.join(cache_dir(), "train-" + hashlib.sha256("|".join(key).encode()).hexdigest()[:16] + ".json")


def choose(torch, model, make_optimizer: Callable, step: Callable, requested: str, shape: str) -> PrecisionChoice:
    """The precision to train with: ``requested`` unless it is ``auto`` (then measured, or read from this
    machine's cache). An explicit bf16 on a CPU without native bf16 is measured too, and warned about in one
    line with the slowdown."""
    native = native_bf16()
    if requested == "fp32" or (requested == "bf16" and native):
        return PrecisionChoice(requested, requested, [], native)
    path = _cache_path(torch, model, shape)
    timings = _read(path)
    cached = timings is not None
    if timings is None:
        fp32 = time_steps(torch, model, make_optimizer, step, "fp32")
        timings = [fp32, time_steps(torch, model, make_optimizer, step, "bf16", fp32.seconds_per_step)]
        _write(path, timings)
    chosen = pick(timings) if requested == "auto" else requested
    choice = PrecisionChoice(requested, chosen, timings, native, cached)
    rate = {t.precision: t for t in timings}
    if requested == "bf16" and rate["bf16"].seconds_per_step > rate["fp32"].seconds_per_step:
        log.warning("training.precision bf16 on a CPU without native bf16 (%s): a step is %.1fx slower than fp32 "
                    "here (measured); set training.precision auto or fp32",
                    processor_name(), rate["bf16"].seconds_per_step / rate["fp32"].seconds_per_step)
    log.info(choice.summary())
    return choice


def _read(path: str) -> list[StepTiming] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return [StepTiming(**row) for row in json.load(fh)["timings"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write(path: str, timings: list[StepTiming]) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(path), delete=False, suffix=".tmp") as fh:
            json.dump({"processor": processor_name(), "cpu_count": os.cpu_count(),
                       "timings": [asdict(t) for t in timings]}, fh, indent=1)
        os.replace(fh.name, path)
    except OSError as exc:  # a read-only home: measured again next time, nothing else lost
        log.warning("training precision not cached (%s): %s", path, exc)
