"""training.precision auto: the faster stable precision by measurement, cached per machine; bf16 forced on a CPU
without native bf16 is said in one line with its measured slowdown."""

from __future__ import annotations

import json
import logging
import os

import pytest

from fashion_catalog.training import precision
from fashion_catalog.training.precision import StepTiming, pick


def _t(name: str, seconds: float, first_loss: float = 2.0, stable: bool = True) -> StepTiming:
    return StepTiming(name, seconds, round(precision.PROBE_BATCH / seconds, 2), first_loss, stable)


@pytest.mark.parametrize("timings,expected", [
    ([_t("fp32", 1.0), _t("bf16", 0.4)], "bf16"),  # native bf16: faster and stable
    ([_t("fp32", 1.0), _t("bf16", 23.0)], "fp32"),  # the AVX2-only EPYC: 23x slower
    ([_t("fp32", 1.0), _t("bf16", 0.4, first_loss=2.5)], "fp32"),  # faster, but its loss strays from fp32's
    ([_t("fp32", 1.0), _t("bf16", 0.4, first_loss=float("nan"), stable=False)], "fp32"),
])
def test_auto_keeps_the_faster_precision_that_trains_like_fp32(timings, expected):
    assert pick(timings) == expected


@pytest.fixture
def tiny_model(tiny_model_dir):
    import torch
    from transformers import CLIPModel, CLIPTokenizer

    from fashion_catalog.training.trainer import Batch, make_optimizer, optimise

    model = CLIPModel.from_pretrained(tiny_model_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tiny_model_dir)
    captions = [f"red dress {i}" for i in range(8)]
    size = model.config.vision_config.image_size
    batch = Batch(captions, torch.eye(8, dtype=torch.bool), tokenizer(captions, padding=True, return_tensors="pt"),
                  torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(0)), ["Dresses"] * 8)
    return (torch, model, lambda m: make_optimizer(torch, m, 1e-4, 0.1),
            lambda m, optim, context: optimise(torch, m, optim, batch, context, 0.0))


def test_auto_measures_both_on_a_copy_then_reads_the_cache(tiny_model, tmp_path, monkeypatch):
    torch, model, make_opt, step = tiny_model
    monkeypatch.setenv("FASHION_CALIBRATION_CACHE", str(tmp_path))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    choice = precision.choose(torch, model, make_opt, step, "auto", shape="tiny")
    assert [t.precision for t in choice.timings] == ["fp32", "bf16"] and not choice.cached
    assert all(t.seconds_per_step > 0 and t.stable for t in choice.timings[:1])
    assert choice.chosen in ("fp32", "bf16") and choice.chosen == pick(choice.timings)
    # The measured steps trained a copy: the model to train is untouched.
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    params = choice.mlflow_params()
    assert params["precision_requested"] == "auto" and params["precision"] == choice.chosen
    assert {"precision_fp32_samples_per_s", "precision_bf16_samples_per_s"} <= set(params)
    [cached] = os.listdir(tmp_path)

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured again although this machine's result is cached")

    monkeypatch.setattr(precision, "time_steps", no_measuring)
    again = precision.choose(torch, model, make_opt, step, "auto", shape="tiny")
    assert again.cached and again.chosen == choice.chosen and os.listdir(tmp_path) == [cached]
    # Another model shape is another measurement.
    with pytest.raises(AssertionError, match="measured again"):
        precision.choose(torch, model, make_opt, step, "auto", shape="small")


def test_bf16_forced_without_native_bf16_warns_with_the_measured_slowdown(tiny_model, tmp_path, monkeypatch, caplog):
    torch, model, make_opt, step = tiny_model
    monkeypatch.setenv("FASHION_CALIBRATION_CACHE", str(tmp_path))
    monkeypatch.setattr(precision, "native_bf16", lambda: False)
    # This machine's measurement as the AVX2-only EPYC gave it (3.5 s vs 80 s per step of 256).
    path = precision._cache_path(torch, model, "tiny")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"timings": [vars(_t("fp32", 3.5)), vars(_t("bf16", 80.5))]}, fh)
    with caplog.at_level(logging.WARNING, logger="fashion_catalog.training.precision"):
        choice = precision.choose(torch, model, make_opt, step, "bf16", shape="tiny")
    assert choice.chosen == "bf16"  # asked for explicitly: kept, and said
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "without native bf16" in warning and "23.0x slower than fp32" in warning and "\n" not in warning
    # On a CPU with native bf16 an explicit bf16 is taken as it is: nothing measured, nothing said.
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    caplog.clear()
    assert precision.choose(torch, model, make_opt, step, "bf16", shape="tiny").timings == []
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_a_precision_whose_first_step_alone_loses_by_far_is_not_timed_further():
    import time

    import torch

    calls = []

    def slow_step(model, optim, context):
        calls.append(1)
        time.sleep(0.1)
        return 1.0

    timing = precision.time_steps(torch, torch.nn.Linear(2, 2), lambda m: None, slow_step, "bf16",
                                  fp32_seconds=0.005)
    assert len(calls) == 1 and timing.seconds_per_step >= 0.1  # one step paid, not 1 + TIMED_STEPS
    calls.clear()
    precision.time_steps(torch, torch.nn.Linear(2, 2), lambda m: None, slow_step, "fp32")
    assert len(calls) == 1 + precision.TIMED_STEPS
