"""Job: train a catalog-tuned CLIP on (product image, caption) pairs read from the products table.

* Starts from ``training.base_model`` (a hub id or CLIP folder: fine-tuning) or, when
  none is configured, from a small CLIP built here with a tokenizer made from the
  catalog's own text (``training.init_shape``; no pretrained weights exist offline).
* Deterministic product-level split (``jobs.catalog_split``): only the train split is
  trained on; validation is scored every few epochs; test is left to ``jobs.evaluate``.
* Captions: the embedder's product description, the display name, or label subsets
  such as "red dresses" (``jobs.catalog_texts``). A caption's positives are its own
  image, images with the same caption, and, for a label caption, every image of the
  batch with those labels (a multi-positive CLIP loss), so the many "black tshirts"
  in a batch are not pushed apart. With ``training.image_label_loss_weight`` > 0 a
  supervised contrastive term also pulls images of one article type together.
* Saves with ``save_pretrained`` (model, tokenizer, image processor, model_card.json
  with ``"weights": "trained"``), so the embedder and the search service load it
  through the same ``from_pretrained`` path as any CLIP; logs parameters, metrics and
  the model (as the multimodal pyfunc) to MLflow.

Usage: python -m jobs.train_clip [--set catalog.source_dir=...] [--max-minutes N] [--out DIR]
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from conf import Config

log = logging.getLogger("jobs.train_clip")


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
    mlflow_run_id: str | None = None


def read_catalog_frame(spark, config: Config) -> pd.DataFrame:
    """Products with the embedder's description (the same Spark SQL expression) as a pandas frame."""
    from schemas import PRODUCT_COLUMNS
    from streaming.tables import read_table
    from udfs.description import description_expr

    frame = read_table(spark, config.tables.products).select(*PRODUCT_COLUMNS, description_expr().alias("description"))
    return frame.toPandas()


def with_splits(frame: pd.DataFrame, seed: int, fractions) -> pd.DataFrame:
    """Add ``image_key`` and ``split`` columns (see :mod:`jobs.catalog_split`)."""
    from jobs.catalog_split import assign_splits, image_key

    frame = frame.copy()
    frame["image_key"] = [image_key(p) for p in frame["image_path"]]
    frame["split"] = assign_splits(frame["product_id"].tolist(), frame["image_key"].tolist(), seed,
                                   tuple(fractions)).loc[frame["product_id"]].to_numpy()
    return frame


def load_pixels(encoder, paths: list[str], limits, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed pixels (float16, the encoder's own resize/crop/normalise) and a readable mask."""
    from udfs.images import ImageError, load_image

    size = encoder.image_size
    out = np.zeros((len(paths), 3, size[0], size[1]), dtype=np.float16)
    ok = np.zeros(len(paths), dtype=bool)
    for start in range(0, len(paths), batch):
        imgs, slots = [], []
        for i in range(start, min(start + batch, len(paths))):
            try:
                imgs.append(load_image(paths[i], limits))
                slots.append(i)
            except ImageError as exc:
                log.warning("skipping %s: %s", paths[i], exc)
        if imgs:
            out[slots] = encoder.preprocess_images(imgs).numpy().astype(np.float16)
            ok[slots] = True
    return out, ok


def encode_pixel_array(encoder, pixels: np.ndarray, batch: int = 256) -> np.ndarray:
    """Unit image vectors (float64) for a float16 pixel array from :func:`load_pixels`."""
    import torch

    from udfs.clip_model import l2_normalize

    if not len(pixels):
        return np.zeros((0, encoder.dimension))
    with torch.inference_mode():
        vectors = [encoder.encode_pixels(torch.from_numpy(pixels[s : s + batch].astype(np.float32)))
                   for s in range(0, len(pixels), batch)]
    return l2_normalize(np.concatenate(vectors).astype(np.float64))


def _augment(torch, pixels, generator):
    """Random horizontal flip and a shift of up to 1/16 of the side (reflect padding). No colour changes:
    colour is a label."""
    n, _, h, w = pixels.shape
    flip = torch.rand(n, generator=generator) < 0.5
    pixels = torch.where(flip[:, None, None, None], pixels.flip(-1), pixels)
    pad = max(1, h // 16)
    padded = torch.nn.functional.pad(pixels, (pad, pad, pad, pad), mode="reflect")
    dy, dx = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=generator))
    return padded[:, :, dy : dy + h, dx : dx + w]


def multi_positive_loss(torch, logits_per_image, captions: list[str], targets=None):
    """Symmetric CLIP loss with several positives per row.

    ``targets`` (captions x images, bool; see ``jobs.catalog_texts.caption_targets``)
    says which images each caption describes; by default identical captions are
    positives of each other's images.
    """
    if targets is None:
        codes = {c: i for i, c in enumerate(dict.fromkeys(captions))}
        ids = torch.tensor([codes[c] for c in captions])
        targets = ids[:, None] == ids[None, :]
    t2i = torch.as_tensor(targets).float()
    i2t = t2i.t()
    log_i = torch.log_softmax(logits_per_image.float(), dim=1)  # image -> captions
    log_t = torch.log_softmax(logits_per_image.float().t(), dim=1)  # caption -> images
    loss_i = -((i2t / i2t.sum(1, keepdim=True)) * log_i).sum(1).mean()
    loss_t = -((t2i / t2i.sum(1, keepdim=True)) * log_t).sum(1).mean()
    return (loss_i + loss_t) / 2


def same_label_image_loss(torch, image_embeds, labels: list[str], temperature: float = 0.1):
    """Supervised contrastive loss among the batch's images: the same article type are positives.

    The CLIP loss alone taught the image tower slowly (validation image->image
    same-type@10 0.39 after 10 epochs); the catalog's labels say directly which
    images belong together.
    """
    codes = {c: i for i, c in enumerate(dict.fromkeys(labels))}
    ids = torch.tensor([codes[c] for c in labels])
    n = len(labels)
    eye = torch.eye(n, dtype=torch.bool)
    positives = (ids[:, None] == ids[None, :]) & ~eye
    has = positives.any(1)
    if not bool(has.any()):
        return image_embeds.sum() * 0.0
    emb = torch.nn.functional.normalize(image_embeds.float(), dim=-1)
    logits = (emb @ emb.t() / temperature).masked_fill(eye, float("-inf"))
    log_prob = torch.log_softmax(logits, dim=1).masked_fill(eye, 0.0)
    pos = positives.float()
    return -((pos * log_prob).sum(1)[has] / pos.sum(1)[has]).mean()


def validation_scores(model_dir: str, frame: pd.DataFrame, pixels: np.ndarray) -> dict:
    """Article-type text->image P@10 and image->image same-type@10 on the rows given (validation)."""
    from jobs.catalog_texts import zero_shot_prompt
    from jobs.retrieval_metrics import precision_at_k, same_label_at_k, top_k
    from udfs.clip_model import ClipEncoder

    enc = ClipEncoder(model_dir, precision="fp32")
    img = encode_pixel_array(enc, pixels)
    types = frame["article_type"].astype(str).to_numpy()
    counts = pd.Series(types).value_counts()
    queries = counts[counts >= 5].index.tolist()
    if not queries:
        return {}
    qv = enc.encode_texts([zero_shot_prompt(t) for t in queries])
    idx = top_k(qv @ img.T, 10)
    p10 = float(np.mean([precision_at_k(types[row] == t) for t, row in zip(queries, idx, strict=True)]))
    return {"type_p_at_10": round(p10, 4), "image_same_type_at_10": round(same_label_at_k(img, types), 4)}


def train_clip(spark, config: Config, output_dir: str | None = None, max_minutes: float | None = None,
               epochs: int | None = None, log_to_mlflow: bool = True, progress: bool = True,
               eval_every_epochs: int = 10) -> TrainResult:
    """Train and save the model; returns what was done (see module docstring)."""
    import torch
    from tqdm import tqdm
    from transformers import CLIPModel

    from udfs.clip_model import ClipEncoder
    from udfs.images import ImageLimits
    from udfs.random_clip import build_random_clip

    tc = config.training
    out = output_dir or tc.output_dir
    budget_s = 60.0 * (max_minutes if max_minutes is not None else tc.max_minutes)
    epochs = epochs or tc.epochs
    torch.manual_seed(tc.seed)
    if config.model.torch_threads:
        torch.set_num_threads(config.model.torch_threads)

    frame = with_splits(read_catalog_frame(spark, config), tc.seed, tc.split_fractions)
    train = frame[frame["split"] == "train"].reset_index(drop=True)
    val = frame[frame["split"] == "validation"].reset_index(drop=True)
    if len(train) < tc.batch_size // 4:
        raise ValueError(f"only {len(train)} training products in {config.tables.products}: load a catalog first "
                         "(python -m jobs.load_catalog)")

    work = tempfile.mkdtemp(prefix="train_clip_")
    try:
        if tc.base_model:
            base = tc.base_model
            init_dir = base
            log.info("fine-tuning from %s", base)
        else:
            corpus = (frame.loc[frame["split"] == "train", "description"].dropna().tolist()
                      + train["product_display_name"].dropna().tolist())
            init_dir = build_random_clip(os.path.join(work, "init"), shape=tc.init_shape, seed=tc.seed, corpus=corpus)
            base = f"from scratch ({tc.init_shape} CLIP, tokenizer from {len(corpus)} catalog texts)"
            log.info("training %s", base)
        encoder = ClipEncoder(init_dir, precision="fp32")
        limits = ImageLimits(config.images.max_bytes, config.images.max_pixels, config.images.base_dir)
        t_load = time.perf_counter()
        pixels, ok = load_pixels(encoder, train["image_path"].tolist(), limits)
        val_pixels, val_ok = load_pixels(encoder, val["image_path"].tolist(), limits)
        train, pixels = train[ok].reset_index(drop=True), pixels[ok]
        val, val_pixels = val[val_ok].reset_index(drop=True), val_pixels[val_ok]
        log.info("%d train / %d validation images preprocessed in %.1fs", len(train), len(val),
                 time.perf_counter() - t_load)
        model = CLIPModel.from_pretrained(init_dir)
        tokenizer = encoder.processor.tokenizer
        max_tokens = int(model.config.text_config.max_position_embeddings)
        del encoder

        from jobs.catalog_texts import caption_targets, training_pair

        rng = np.random.default_rng(tc.seed)
        generator = torch.Generator().manual_seed(tc.seed)
        records = train.to_dict("records")
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
        no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
        optim = torch.optim.AdamW([{"params": decay, "weight_decay": tc.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=tc.learning_rate)
        batch = min(tc.batch_size, len(train))
        steps_per_epoch = max(1, len(train) // batch)
        total_steps = epochs * steps_per_epoch
        autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if tc.precision == "bf16"
                    else torch.autocast("cpu", enabled=False))

        def lr_at(step: int) -> float:
            if step < tc.warmup_steps:
                return tc.learning_rate * (step + 1) / tc.warmup_steps
            progress_ = (step - tc.warmup_steps) / max(1, total_steps - tc.warmup_steps)
            return tc.learning_rate * 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))

        run = _start_mlflow(config, log_to_mlflow)
        if run is not None:
            import mlflow

            mlflow.log_params({"base": base, "train_products": len(train), "validation_products": len(val),
                               "batch_size": batch, "learning_rate": tc.learning_rate, "epochs": epochs,
                               "max_minutes": budget_s / 60, "weight_decay": tc.weight_decay,
                               "precision": tc.precision, "seed": tc.seed, "init_shape": tc.init_shape,
                               "image_label_loss_weight": tc.image_label_loss_weight,
                               "parameters": sum(p.numel() for p in model.parameters())})
        model.train()
        started = time.perf_counter()
        step, loss_ema, validation = 0, float("nan"), {}
        bar = tqdm(total=total_steps, disable=not progress, unit="step", dynamic_ncols=True)
        fitted = False
        while step < total_steps:
            order = rng.permutation(len(train))
            for b in range(steps_per_epoch):
                if step >= total_steps:
                    break
                idx = order[b * batch : (b + 1) * batch]
                pairs = [training_pair(records[i], rng) for i in idx]
                captions = [c for c, _ in pairs]
                batch_records = [records[i] for i in idx]
                targets = torch.from_numpy(caption_targets(captions, [s for _, s in pairs], batch_records))
                tokens = tokenizer(captions, padding=True, truncation=True, max_length=max_tokens,
                                   return_tensors="pt")
                images = _augment(torch, torch.from_numpy(pixels[idx].astype(np.float32)), generator)
                for group in optim.param_groups:
                    group["lr"] = lr_at(step)
                with autocast:
                    outputs = model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"],
                                    pixel_values=images)
                loss = multi_positive_loss(torch, outputs.logits_per_image, captions, targets)
                if tc.image_label_loss_weight > 0:
                    loss = loss + tc.image_label_loss_weight * same_label_image_loss(
                        torch, outputs.image_embeds, [str(r.get("article_type")) for r in batch_records])
                optim.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optim.step()
                with torch.no_grad():
                    model.logit_scale.clamp_(0, math.log(100))
                step += 1
                elapsed = time.perf_counter() - started
                value = loss.item()
                loss_ema = value if math.isnan(loss_ema) else 0.95 * loss_ema + 0.05 * value
                if step == 20 and not fitted:
                    # Fit the schedule to the time budget once the step time is known.
                    fitted = True
                    affordable = int(budget_s / (elapsed / step))
                    if affordable < total_steps:
                        total_steps = max(step + 1, affordable)
                        bar.total = total_steps
                        log.info("time budget %.0f min: %d steps (%.1f epochs)", budget_s / 60, total_steps,
                                 total_steps / steps_per_epoch)
                bar.update(1)
                bar.set_postfix(loss=f"{loss_ema:.3f}", samples_s=f"{step * batch / elapsed:.0f}",
                                scale=f"{model.logit_scale.exp().item():.1f}")
                if run is not None and step % 25 == 0:
                    mlflow.log_metrics({"loss": loss_ema, "lr": lr_at(step),
                                        "logit_scale": model.logit_scale.exp().item()}, step=step)
                if elapsed > budget_s * 1.02:
                    total_steps = step
                    break
            epoch_done = step / steps_per_epoch
            if eval_every_epochs and len(val) and step < total_steps and int(epoch_done) % eval_every_epochs == 0:
                validation = _validate(model, init_dir, work, val, val_pixels)
                log.info("epoch %.0f: validation %s", epoch_done, validation)
                if run is not None:
                    mlflow.log_metrics({f"val_{k}": v for k, v in validation.items()}, step=step)
        bar.close()
        seconds = time.perf_counter() - started
        model.eval()
        counts = frame["split"].value_counts()
        result_products = {"train": int(counts.get("train", 0)), "validation": int(counts.get("validation", 0)),
                           "test": int(counts.get("test", 0)), "total": int(len(frame)),
                           "trained_pairs": int(len(train)), "unreadable_images": int((~ok).sum() + (~val_ok).sum())}
        card = {
            "weights": "trained",
            "base": base,
            "trained_on": str(config.tables.products),
            "products": result_products,
            "split": {"seed": tc.seed, "fractions": list(tc.split_fractions)},
            "steps": step,
            "batch_size": batch,
            "epochs": round(step / steps_per_epoch, 2),
            "train_seconds": round(seconds, 1),
            "note": "Trained by jobs.train_clip on this catalog; evaluate with python -m jobs.evaluate.",
        }
        _save(model, init_dir, out, card)
        if len(val):
            validation = validation_scores(out, val, val_pixels)
        _write_card(out, dict(card, validation=validation))
        result = TrainResult(out, base, result_products, step, round(step / steps_per_epoch, 2), round(seconds, 1),
                             round(step * batch / max(seconds, 1e-9), 1), round(loss_ema, 4), validation)
        if run is not None:
            mlflow.log_metrics({"train_seconds": seconds, "samples_per_second": result.samples_per_second,
                                "loss": loss_ema,
                                **{f"val_{k}": v for k, v in validation.items()}}, step=step)
            from jobs.register_model import log_encoder_model

            log_encoder_model(config, out)
            result.mlflow_run_id = run.info.run_id
            mlflow.end_run()
        log.info("trained model saved to %s: %s", out, json.dumps(asdict(result)))
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _validate(model, init_dir: str, work: str, val: pd.DataFrame, val_pixels: np.ndarray) -> dict:
    tmp = os.path.join(work, "snapshot")
    model.eval()
    _save(model, init_dir, tmp, card={"weights": "trained", "note": "mid-training snapshot"})
    model.train()
    return validation_scores(tmp, val, val_pixels)


def _save(model, init_dir: str, out: str, card: dict) -> None:
    from transformers import CLIPProcessor


    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    CLIPProcessor.from_pretrained(init_dir, use_fast=False).save_pretrained(out)
    _write_card(out, card)


def _write_card(out: str, card: dict) -> None:
    from udfs.clip_model import MODEL_CARD

    with open(os.path.join(out, MODEL_CARD), "w", encoding="utf-8") as fh:
        json.dump(card, fh, indent=2)


def _start_mlflow(config: Config, enabled: bool):
    if not enabled:
        return None
    import mlflow

    from jobs.register_model import setup_mlflow

    setup_mlflow(config)
    return mlflow.start_run(run_name="train_clip")


def main(argv: list[str] | None = None) -> None:
    from jobs.cli import parser, setup
    from streaming.spark import get_spark

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--out", help="output folder (default: training.output_dir)")
    p.add_argument("--max-minutes", type=float, help="wall-clock budget (default: training.max_minutes)")
    p.add_argument("--epochs", type=int, help="epochs (default: training.epochs)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log the run to MLflow")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    config = setup(args)
    spark = get_spark(config)
    result = train_clip(spark, config, output_dir=args.out, max_minutes=args.max_minutes, epochs=args.epochs,
                        log_to_mlflow=not args.no_mlflow, progress=not args.no_progress)
    print(json.dumps(asdict(result), indent=2))
    print(f"model: {result.output_dir} (weights: trained, {result.base}); use it with "
          f"--set model.name_or_path={result.output_dir}")


if __name__ == "__main__":
    main()
