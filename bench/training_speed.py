"""Training speed on this machine, side by side in one run: fp32, bf16 and ``auto`` steps, and the input pipeline.

On the real sample (``../shared/datasets/fashion-sample``; a drawn demo catalogue when it is absent) and the
model jobs.train_clip trains (``--shape small`` from scratch by default), with the configured batch size:

* ``precisions``: seconds per optimisation step on ready batches for fp32 and bf16, each on a fresh copy of
  the same model (one warm-up step first); ``auto``: what :mod:`fashion_catalog.training.precision` picks here
  (measured at its probe batch, into an empty cache) and the steps of that choice, timed on their own, with
  the seconds the choice took;
* ``pipeline``: the chosen precision's model step on preloaded tensors (forward + backward + update) against a
  full step (captions, targets, tokens, augmentation and the model step), made serially and with
  :class:`~fashion_catalog.training.trainer.BatchFeed` prefetching on its own thread. ``ratio`` = model step /
  full step; the target is >= 0.9. Decoding is not in a step: the trainer decodes every image once before the
  first step (``prepare_data``), so the per-step input work is captions, tokens and augmentation.

Prints one JSON object. Usage: python -m bench.training_speed [--steps 3] [--batch-size 256] [--shape small]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time

DEFAULT_SAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "fashion-sample")


def _rows(sample_dir: str | None, work: str, need: int) -> tuple[list[dict], str]:
    from fashion_catalog.catalog.demo import generate_demo_catalog
    from fashion_catalog.catalog.parser import parse_styles_csv

    source = sample_dir if sample_dir and os.path.isfile(os.path.join(sample_dir, "styles.csv")) else None
    if source is None:
        source = generate_demo_catalog(os.path.join(work, "demo"), n_products=max(need, 64))
    rows = parse_styles_csv(os.path.join(source, "styles.csv"), os.path.join(source, "images")).rows
    rows = [r for r in rows if r.get("image_path") and os.path.isfile(r["image_path"])]
    return rows[:need], os.path.abspath(source)


def _timed(fn, steps: int) -> float:
    """Seconds per call of ``fn`` over ``steps`` calls (after none: the caller warms up)."""
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sample-dir", default=DEFAULT_SAMPLE)
    p.add_argument("--shape", default="small", choices=["tiny", "small", "vit-b-32"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from fashion_catalog.conf import load_config
    from fashion_catalog.encoders.calibrate import CACHE_ENV
    from fashion_catalog.encoders.clip import ClipEncoder
    from fashion_catalog.encoders.images import ImageLimits
    from fashion_catalog.encoders.pixels import load_pixels
    from fashion_catalog.encoders.random_clip import build_random_clip
    from fashion_catalog.training import precision
    from fashion_catalog.training.trainer import BatchFeed, make_batch, make_optimizer, optimise

    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config("local")
    tc = config.training
    work = tempfile.mkdtemp(prefix="bench-training-")
    n_rows = args.batch_size * (args.steps + 2)
    rows, source = _rows(args.sample_dir, work, n_rows)
    corpus = [r["product_display_name"] for r in rows if r.get("product_display_name")]
    init_dir = build_random_clip(os.path.join(work, "init"), shape=args.shape, seed=tc.seed, corpus=corpus,
                                 training_start=True)
    encoder = ClipEncoder(init_dir, precision="fp32")
    t0 = time.perf_counter()
    pixels, ok = load_pixels(encoder, [r["image_path"] for r in rows], ImageLimits(config.images.max_bytes,
                                                                                  config.images.max_pixels))
    decode_s = time.perf_counter() - t0
    rows, pixels = [r for r, keep in zip(rows, ok, strict=True) if keep], pixels[ok]
    tokenizer = encoder.processor.tokenizer
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(init_dir)
    max_tokens = int(model.config.text_config.max_position_embeddings)
    batch = min(args.batch_size, len(rows))
    w = tc.image_label_loss_weight

    def new_batch(idx, rng, generator):
        return make_batch(torch, tokenizer, max_tokens, [rows[i] for i in idx], pixels[idx], rng, generator)

    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    ready = [new_batch(np.arange(i * batch, (i + 1) * batch) % len(rows), rng, gen) for i in range(args.steps + 1)]

    def model_steps(name: str, steps: int) -> float:
        """Seconds per model step on ready batches, on a fresh copy (one warm-up step first)."""
        trial = copy.deepcopy(model)
        trial.train()
        optim = make_optimizer(torch, trial, tc.learning_rate, tc.weight_decay)
        context = precision.autocast(torch, name)
        optimise(torch, trial, optim, ready[0], context, w)
        it = iter(ready[1:] * (1 + steps // max(1, len(ready) - 1)))
        return _timed(lambda: optimise(torch, trial, optim, next(it), context, w), steps)

    result: dict = {"benchmark": "training_speed", "processor": precision.processor_name(),
                    "native_bf16": precision.native_bf16(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "python": platform.python_version(), "shape": args.shape, "batch_size": batch,
                    "timed_steps": args.steps, "sample": source, "images_decoded": int(len(rows)),
                    "decode_s": round(decode_s, 1)}
    per_step = {name: model_steps(name, args.steps) for name in precision.PRECISIONS}
    # auto, into an empty cache: the choice as a first run on this machine makes it, then its own steps.
    os.environ[CACHE_ENV] = os.path.join(work, "cache")
    probe = new_batch(np.arange(min(precision.PROBE_BATCH, len(rows))), np.random.default_rng(1),
                      torch.Generator().manual_seed(1))
    t0 = time.perf_counter()
    choice = precision.choose(torch, model, lambda m: make_optimizer(torch, m, tc.learning_rate, tc.weight_decay),
                              lambda m, optim, context: optimise(torch, m, optim, probe, context, w), "auto",
                              shape=args.shape)
    choice_s = time.perf_counter() - t0
    per_step["auto"] = model_steps(choice.chosen, args.steps)
    result["precisions"] = {name: {"seconds_per_step": round(s, 3), "steps_per_s": round(1 / s, 4),
                                   "samples_per_s": round(batch / s, 1)} for name, s in per_step.items()}
    result["precisions"]["auto"].update(chosen=choice.chosen, choice_s=round(choice_s, 1),
                                        probe=[vars(t) for t in choice.timings])
    result["bf16_vs_fp32"] = round(per_step["bf16"] / per_step["fp32"], 2)

    # The input pipeline, in the chosen precision.
    chosen = choice.chosen
    trial = copy.deepcopy(model)
    trial.train()
    optim = make_optimizer(torch, trial, tc.learning_rate, tc.weight_decay)
    context = precision.autocast(torch, chosen)

    def full_steps(depth: int) -> float:
        rng, gen = np.random.default_rng(2), torch.Generator().manual_seed(2)
        feed = BatchFeed(lambda idx: new_batch(idx, rng, gen), len(rows), batch, rng, depth=depth)
        try:
            optimise(torch, trial, optim, feed.next(), context, w)  # warm-up (and the feed fills)
            return _timed(lambda: optimise(torch, trial, optim, feed.next(), context, w), args.steps)
        finally:
            feed.close()

    model_s = per_step["auto"]
    serial_s, prefetch_s = full_steps(0), full_steps(2)
    result["pipeline"] = {"precision": chosen, "model_step_s": round(model_s, 3),
                          "full_step_serial_s": round(serial_s, 3), "full_step_prefetch_s": round(prefetch_s, 3),
                          "ratio_serial": round(model_s / serial_s, 3), "ratio": round(model_s / prefetch_s, 3),
                          "make_batch_s": round(_timed(lambda: new_batch(np.arange(batch), rng, gen), 2), 3)}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
