"""Train a catalog-tuned CLIP on (product image, caption) pairs read from the products table.

* Starts from ``training.base_model`` (a hub id or CLIP folder: fine-tuning) or, when
  none is configured, from a small CLIP built here with a tokenizer made from the
  catalog's own text (``training.init_shape``; no pretrained weights exist offline).
* Deterministic product-level split (``evaluation.split``): only the train split is
  trained on; validation is scored every few epochs; test is left to ``jobs.evaluate``.
* Captions: the embedder's product description, the display name, or label subsets
  such as "red dresses" (``training.captions``). A caption's positives are its own
  image, images with the same caption, and, for a label caption, every image of the
  batch with those labels (a multi-positive CLIP loss), so the many "black tshirts"
  in a batch are not pushed apart. With ``training.image_label_loss_weight`` > 0 a
  supervised contrastive term also pulls images of one article type together.
* Saves with ``save_pretrained`` (model, tokenizer, image processor, model_card.json
  with ``"weights": "trained"``), so the embedder and the search service load it
  through the same ``from_pretrained`` path as any CLIP; logs parameters, metrics and
  the model (as the multimodal pyfunc) to MLflow.

* ``training.precision: auto`` times fp32 and bf16 steps on this machine first and trains with the faster
  stable one (:mod:`fashion_catalog.training.precision`); the next batch is made on a thread of its own
  while the model steps (:class:`BatchFeed`).

The parts have names: :func:`prepare_data`, :class:`Schedule`, :func:`make_optimizer`,
:func:`make_batch`, :func:`optimise`, :class:`BatchFeed`, :func:`save_model`; :func:`train_clip` runs them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from fashion_catalog.catalog.reader import read_catalog_frame
from fashion_catalog.conf import Config
from fashion_catalog.encoders.clip import ClipEncoder
from fashion_catalog.encoders.images import ImageLimits
from fashion_catalog.encoders.model_card import write_model_card
from fashion_catalog.encoders.pixels import load_pixels
from fashion_catalog.encoders.random_clip import build_random_clip
from fashion_catalog.evaluation.split import with_splits
from fashion_catalog.evaluation.validation import validation_scores
from fashion_catalog.training.captions import caption_targets, training_pair
from fashion_catalog.training.losses import augment, multi_positive_loss, same_label_image_loss
from fashion_catalog.training.precision import autocast as precision_autocast

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run produced."""

    output_dir: str
    base: str
    products: dict
    steps: int
    epochs_done: float
    seconds: float
    samples_per_second: float
    final_loss: float
    validation: dict
    precision: str = "fp32"
    precision_steps_per_s: dict | None = None  # what the choice was measured on (empty: not measured)
    mlflow_run_id: str | None = None


@dataclass
class TrainingData:
    """The split catalog and the preprocessed pixels of its readable train and validation images."""

    frame: pd.DataFrame
    train: pd.DataFrame
    val: pd.DataFrame
    pixels: np.ndarray
    val_pixels: np.ndarray
    unreadable: int

    def product_counts(self) -> dict:
        counts = self.frame["split"].value_counts()
        return {"train": int(counts.get("train", 0)), "validation": int(counts.get("validation", 0)),
                "test": int(counts.get("test", 0)), "total": int(len(self.frame)),
                "trained_pairs": int(len(self.train)), "unreadable_images": self.unreadable}


def initial_model(config: Config, frame: pd.DataFrame, work: str) -> tuple[str, str]:
    """(folder to start from, how it was made): the configured base model, or a small CLIP built from scratch."""
    tc = config.training
    if tc.base_model:
        log.info("fine-tuning from %s", tc.base_model)
        return tc.base_model, tc.base_model
    train = frame[frame["split"] == "train"]
    corpus = train["description"].dropna().tolist() + train["product_display_name"].dropna().tolist()
    init_dir = build_random_clip(os.path.join(work, "init"), shape=tc.init_shape, seed=tc.seed, corpus=corpus,
                                 training_start=True)
    base = f"from scratch ({tc.init_shape} CLIP, tokenizer from {len(corpus)} catalog texts)"
    log.info("training %s", base)
    return init_dir, base


def prepare_data(config: Config, frame: pd.DataFrame, encoder: ClipEncoder) -> TrainingData:
    """Preprocess the train and validation images with the starting model's own image processor."""
    limits = ImageLimits.from_config(config)
    train = frame[frame["split"] == "train"].reset_index(drop=True)
    val = frame[frame["split"] == "validation"].reset_index(drop=True)
    started = time.perf_counter()
    pixels, ok = load_pixels(encoder, train["image_path"].tolist(), limits)
    val_pixels, val_ok = load_pixels(encoder, val["image_path"].tolist(), limits)
    data = TrainingData(frame, train[ok].reset_index(drop=True), val[val_ok].reset_index(drop=True), pixels[ok],
                        val_pixels[val_ok], int((~ok).sum() + (~val_ok).sum()))
    log.info("%d train / %d validation images preprocessed in %.1fs", len(data.train), len(data.val),
             time.perf_counter() - started)
    return data


class Schedule:
    """Linear warm-up then cosine decay, whose length is fitted to the wall-clock budget once steps are timed."""

    FIT_AFTER_STEPS = 20

    def __init__(self, peak_lr: float, warmup_steps: int, total_steps: int, budget_s: float):
        self.peak_lr, self.warmup_steps, self.total_steps, self.budget_s = peak_lr, warmup_steps, total_steps, budget_s
        self.fitted = False

    def lr(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return self.peak_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def fit(self, step: int, elapsed: float) -> bool:
        """After the first steps, shorten the schedule to what the budget affords; True when it changed."""
        if self.fitted or step < self.FIT_AFTER_STEPS:
            return False
        self.fitted = True
        affordable = int(self.budget_s / (elapsed / step))
        if affordable >= self.total_steps:
            return False
        self.total_steps = max(step + 1, affordable)
        return True

    def over_budget(self, elapsed: float) -> bool:
        return elapsed > self.budget_s * 1.02


def make_optimizer(torch, model, learning_rate: float, weight_decay: float):
    """AdamW; no weight decay on biases, norms and embeddings."""
    def decays(name: str, p) -> bool:
        return p.ndim >= 2 and "embedding" not in name

    decay = [p for n, p in model.named_parameters() if decays(n, p)]
    no_decay = [p for n, p in model.named_parameters() if not decays(n, p)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=learning_rate)


@dataclass
class Batch:
    """One step's inputs, ready for the model: what the input pipeline makes while the previous step runs."""

    captions: list[str]
    targets: object  # captions x images bool tensor
    tokens: dict
    images: object  # augmented pixel tensor
    article_types: list[str]


def make_batch(torch, tokenizer, max_tokens: int, records: list[dict], pixels: np.ndarray, rng: np.random.Generator,
               generator) -> Batch:
    """Captions drawn, targets, tokens and augmented images of one batch of products (no model work)."""
    pairs = [training_pair(r, rng) for r in records]
    captions = [c for c, _ in pairs]
    targets = torch.from_numpy(caption_targets(captions, [s for _, s in pairs], records))
    tokens = tokenizer(captions, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
    images = augment(torch, torch.from_numpy(pixels.astype(np.float32)), generator)
    return Batch(captions, targets, tokens, images, [str(r.get("article_type")) for r in records])


def optimise(torch, model, optim, batch: Batch, autocast, image_label_loss_weight: float) -> float:
    """One optimisation step (forward, loss, backward, update) on a ready batch; returns the loss."""
    with autocast:
        outputs = model(input_ids=batch.tokens["input_ids"], attention_mask=batch.tokens["attention_mask"],
                        pixel_values=batch.images)
    loss = multi_positive_loss(torch, outputs.logits_per_image, batch.captions, batch.targets)
    if image_label_loss_weight > 0:
        loss = loss + image_label_loss_weight * same_label_image_loss(torch, outputs.image_embeds,
                                                                      batch.article_types)
    optim.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optim.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(100))
    return loss.item()


class BatchFeed:
    """The input pipeline on a thread of its own: shuffled epochs of batches, made ``depth`` steps ahead.

    The thread owns the run's random streams (epoch order, caption draws, augmentation), so a run is as
    deterministic as a serial one; torch's ops release the GIL, so the model's step and the next batch's
    tokenising and augmenting overlap. ``depth=0`` makes each batch on the caller's thread (serial).
    """

    def __init__(self, make: Callable[[np.ndarray], Batch], n_rows: int, batch: int, rng: np.random.Generator,
                 depth: int = 2):
        self.make, self.n_rows, self.batch, self.rng, self.depth = make, n_rows, batch, rng, depth
        self.steps_per_epoch = max(1, n_rows // batch)
        self._order = self._indices()
        self._queue: queue.Queue | None = None
        self._stop = threading.Event()
        if depth > 0:
            self._queue = queue.Queue(maxsize=depth)
            self._thread = threading.Thread(target=self._fill, daemon=True, name="batch-feed")
            self._thread.start()

    def _indices(self) -> Iterator[np.ndarray]:
        while True:
            order = self.rng.permutation(self.n_rows)
            for b in range(self.steps_per_epoch):
                yield order[b * self.batch : (b + 1) * self.batch]

    def _fill(self) -> None:
        try:
            for idx in self._order:
                item = self.make(idx)
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the training thread, which raises it
            self._queue.put(exc)

    def next(self) -> Batch:
        if self._queue is None:
            return self.make(next(self._order))
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()


def save_model(model, init_dir: str, out: str, card: dict) -> None:
    """save_pretrained the model with the starting folder's processor, plus its model card."""
    from transformers import CLIPProcessor

    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    CLIPProcessor.from_pretrained(init_dir, use_fast=False).save_pretrained(out)
    write_model_card(out, card)


def _validate(model, init_dir: str, work: str, data: TrainingData) -> dict:
    """Score a mid-training snapshot exactly as the embedder would load it."""
    tmp = os.path.join(work, "snapshot")
    model.eval()
    save_model(model, init_dir, tmp, card={"weights": "trained", "note": "mid-training snapshot"})
    model.train()
    return validation_scores(tmp, data.val, data.val_pixels)


class _Mlflow:
    """The run a training logs to (or nothing, when disabled)."""

    def __init__(self, config: Config, enabled: bool):
        self.run = None
        if enabled:
            import mlflow

            from fashion_catalog.encoders.registry import setup_mlflow

            setup_mlflow(config)
            self.run = mlflow.start_run(run_name="train_clip")

    def params(self, values: dict) -> None:
        if self.run is not None:
            import mlflow

            mlflow.log_params(values)

    def metrics(self, values: dict, step: int) -> None:
        if self.run is not None:
            import mlflow

            mlflow.log_metrics(values, step=step)

    def finish(self, config: Config, out: str) -> str | None:
        if self.run is None:
            return None
        import mlflow

        from fashion_catalog.encoders.registry import log_encoder_model

        log_encoder_model(config, out)
        mlflow.end_run()
        return self.run.info.run_id


@dataclass
class Loop:
    """Everything one run of the training loop touches."""

    torch: object
    model: object
    optim: object
    feed: BatchFeed
    data: TrainingData
    schedule: Schedule
    batch: int
    autocast: object
    tracking: _Mlflow
    image_label_loss_weight: float


def run_loop(loop: Loop, init_dir: str, work: str, eval_every_epochs: int, progress: bool) -> tuple[int, float, dict]:
    """Steps on the feed's batches until the (budget-fitted) schedule ends; returns (steps, loss EMA, validation)."""
    from tqdm import tqdm

    data, schedule, model = loop.data, loop.schedule, loop.model
    steps_per_epoch = loop.feed.steps_per_epoch
    model.train()
    started = time.perf_counter()
    step, loss_ema, validation = 0, float("nan"), {}
    bar = tqdm(total=schedule.total_steps, disable=not progress, unit="step", dynamic_ncols=True)
    while step < schedule.total_steps:
        for group in loop.optim.param_groups:
            group["lr"] = schedule.lr(step)
        value = optimise(loop.torch, model, loop.optim, loop.feed.next(), loop.autocast, loop.image_label_loss_weight)
        step += 1
        elapsed = time.perf_counter() - started
        loss_ema = value if math.isnan(loss_ema) else 0.95 * loss_ema + 0.05 * value
        if schedule.fit(step, elapsed):
            bar.total = schedule.total_steps
            log.info("time budget %.0f min: %d steps (%.1f epochs)", schedule.budget_s / 60,
                     schedule.total_steps, schedule.total_steps / steps_per_epoch)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_ema:.3f}", samples_s=f"{step * loop.batch / elapsed:.0f}",
                        scale=f"{model.logit_scale.exp().item():.1f}")
        if step % 25 == 0:
            loop.tracking.metrics({"loss": loss_ema, "lr": schedule.lr(step),
                                   "logit_scale": model.logit_scale.exp().item()}, step)
        if schedule.over_budget(elapsed):
            schedule.total_steps = step
            break
        epoch_done = step // steps_per_epoch
        if (step % steps_per_epoch == 0 and eval_every_epochs and len(data.val) and step < schedule.total_steps
                and epoch_done % eval_every_epochs == 0):
            validation = _validate(model, init_dir, work, data)
            log.info("epoch %d: validation %s", epoch_done, validation)
            loop.tracking.metrics({f"val_{k}": v for k, v in validation.items()}, step)
    bar.close()
    loop.feed.close()
    model.eval()
    return step, loss_ema, validation


def choose_precision(torch, config: Config, model, data: TrainingData, tokenizer, max_tokens: int):
    """``training.precision`` resolved on this machine (:mod:`fashion_catalog.training.precision`): the probe
    steps run on a copy of the model and the first train rows, with random streams of their own."""
    from fashion_catalog.training import precision

    tc = config.training
    n = min(precision.PROBE_BATCH, len(data.train))
    probe = make_batch(torch, tokenizer, max_tokens, data.train.iloc[:n].to_dict("records"), data.pixels[:n],
                       np.random.default_rng(0), torch.Generator().manual_seed(0))
    return precision.choose(
        torch, model, lambda m: make_optimizer(torch, m, tc.learning_rate, tc.weight_decay),
        lambda m, optim, context: optimise(torch, m, optim, probe, context, tc.image_label_loss_weight),
        tc.precision, shape=f"{tc.init_shape}:{tc.base_model}:{tuple(data.pixels.shape[1:])}")


def train_clip(spark, config: Config, output_dir: str | None = None, max_minutes: float | None = None,
               epochs: int | None = None, log_to_mlflow: bool = True, progress: bool = True,
               eval_every_epochs: int = 10) -> TrainResult:
    """Train and save the model; returns what was done (see module docstring)."""
    import torch
    from transformers import CLIPModel

    tc = config.training
    out = output_dir or tc.output_dir
    budget_s = 60.0 * (max_minutes if max_minutes is not None else tc.max_minutes)
    epochs = epochs or tc.epochs
    torch.manual_seed(tc.seed)
    if config.model.torch_threads:
        torch.set_num_threads(config.model.torch_threads)
    frame = with_splits(read_catalog_frame(spark, config), tc.seed, tc.split_fractions)
    n_train = int((frame["split"] == "train").sum())
    if n_train < tc.batch_size // 4:
        raise ValueError(f"only {n_train} training products in {config.tables.products}: load a catalog first "
                         "(python -m fashion_catalog.jobs.load_catalog)")
    work = tempfile.mkdtemp(prefix="train_clip_")
    try:
        init_dir, base = initial_model(config, frame, work)
        encoder = ClipEncoder(init_dir, precision="fp32")
        data = prepare_data(config, frame, encoder)
        model = CLIPModel.from_pretrained(init_dir)
        batch = min(tc.batch_size, len(data.train))
        steps_per_epoch = max(1, len(data.train) // batch)
        tokenizer, max_tokens = encoder.processor.tokenizer, int(model.config.text_config.max_position_embeddings)
        chosen = choose_precision(torch, config, model, data, tokenizer, max_tokens)
        # One random stream for epoch order and caption draws, one torch generator for augmentation: both used
        # by the feed's thread only.
        records, rng, generator = data.train.to_dict("records"), np.random.default_rng(tc.seed), \
            torch.Generator().manual_seed(tc.seed)
        feed = BatchFeed(lambda idx: make_batch(torch, tokenizer, max_tokens, [records[i] for i in idx],
                                                data.pixels[idx], rng, generator),
                         len(data.train), batch, rng, depth=tc.prefetch_batches)
        loop = Loop(
            torch=torch, model=model, optim=make_optimizer(torch, model, tc.learning_rate, tc.weight_decay),
            feed=feed, data=data,
            schedule=Schedule(tc.learning_rate, tc.warmup_steps, epochs * steps_per_epoch, budget_s), batch=batch,
            autocast=precision_autocast(torch, chosen.chosen), tracking=_Mlflow(config, log_to_mlflow),
            image_label_loss_weight=tc.image_label_loss_weight)
        del encoder
        loop.tracking.params({
            "base": base, "train_products": len(data.train), "validation_products": len(data.val),
            "batch_size": batch, "learning_rate": tc.learning_rate, "epochs": epochs, "max_minutes": budget_s / 60,
            "weight_decay": tc.weight_decay, "seed": tc.seed, "init_shape": tc.init_shape,
            "image_label_loss_weight": tc.image_label_loss_weight, "prefetch_batches": tc.prefetch_batches,
            "parameters": sum(p.numel() for p in model.parameters()), **chosen.mlflow_params()})
        started = time.perf_counter()
        step, loss_ema, validation = run_loop(loop, init_dir, work, eval_every_epochs, progress)
        seconds = time.perf_counter() - started
        products = data.product_counts()
        card = {
            "weights": "trained",
            "base": base,
            "trained_on": str(config.tables.products),
            "products": products,
            "split": {"seed": tc.seed, "fractions": list(tc.split_fractions)},
            "steps": step,
            "batch_size": batch,
            "epochs": round(step / steps_per_epoch, 2),
            "train_seconds": round(seconds, 1),
            "note": "Trained by jobs.train_clip on this catalog; evaluate with "
                    "python -m fashion_catalog.jobs.evaluate.",
        }
        save_model(model, init_dir, out, card)
        if len(data.val):
            validation = validation_scores(out, data.val, data.val_pixels)
        write_model_card(out, dict(card, validation=validation))
        result = TrainResult(out, base, products, step, round(step / steps_per_epoch, 2), round(seconds, 1),
                             round(step * batch / max(seconds, 1e-9), 1), round(loss_ema, 4), validation,
                             chosen.chosen, chosen.steps_per_s())
        loop.tracking.metrics({"train_seconds": seconds, "samples_per_second": result.samples_per_second,
                               "loss": loss_ema, **{f"val_{k}": v for k, v in validation.items()}}, step)
        result.mlflow_run_id = loop.tracking.finish(config, out)
        log.info("trained model saved to %s: %s", out, json.dumps(asdict(result)))
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)
