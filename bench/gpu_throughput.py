"""GPU throughput: the raw CLIP on one GPU, fed by parallel decoding, and the backfill end to end through Spark.

In one run, on the real sample (``../shared/datasets/fashion-sample``) and a ViT-B/32-shaped
CLIP (random weights, the real model's compute):

* ``decode``: JPEG decode (PIL ``draft``: the DCT scales down while decoding, 2-4x less work for
  catalogue photos far larger than 224 px) + resize/crop/normalise, on ``--decode-workers`` threads;
* ``model``: pixel batches already on the device, forward passes only (the GPU's ceiling);
* ``raw``: decode threads feeding the model, overlapped (what a backfill can reach at best);
* ``e2e``: ``bench.backfill_throughput`` on the same device and precision (Spark, Arrow pandas
  UDFs, MERGE), and its ratio to ``raw``.

Targets (issue 13): >= 2,500 images/s raw on one H100/H200-class GPU; end-to-end ratio >= 0.8.
Sized to finish within ~8 minutes on one GPU with ``--limit 0`` (9,583 products). On CPU it runs
too (``--device cpu --shape tiny``), which is how the tests check the script itself.
Usage: python -m bench.gpu_throughput [--device cuda] [--precision fp16] [--batch-size 256] [--limit 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

DEFAULT_SAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "fashion-sample")


def fast_decode(path: str, size: int):
    """An RGB image at least ``size`` px on its short side, decoded with JPEG draft scaling when possible."""
    from PIL import Image

    with Image.open(path) as img:
        if img.format == "JPEG":
            img.draft("RGB", (size, size))  # decode at 1/2, 1/4 or 1/8 scale, never below size
        return img.convert("RGB")


def _image_paths(sample_dir: str, limit: int) -> list[str]:
    from fashion_catalog.catalog.parser import parse_styles_csv

    rows = parse_styles_csv(os.path.join(sample_dir, "styles.csv"), os.path.join(sample_dir, "images")).rows
    paths = [r["image_path"] for r in rows if r["image_path"] and os.path.isfile(r["image_path"])]
    return paths[:limit] if limit else paths


def measure_raw(encoder, paths: list[str], batch_size: int, workers: int) -> dict:
    """Decode-only, model-only and overlapped (decode threads feeding the model) images/s."""
    torch = encoder._torch
    size = min(encoder.image_size)
    sync = torch.cuda.synchronize if encoder.device == "cuda" else (lambda: None)
    batches = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]

    def prepare(chunk: list[str]):
        return encoder.preprocess_images([fast_decode(p, size) for p in chunk])

    with ThreadPoolExecutor(workers) as pool:
        encoder.encode_pixels(prepare(batches[0][:8]))  # warm-up: kernels, allocator
        sync()
        t0 = time.perf_counter()
        pixels = list(pool.map(prepare, batches))
        decode_s = time.perf_counter() - t0
        on_device = [p.to(encoder.device) for p in pixels[:4]] if encoder.device != "cpu" else pixels[:4]
        t0 = time.perf_counter()
        done = 0
        for p in on_device:
            encoder.encode_pixels(p)
            done += len(p)
        sync()
        model_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for p in pool.map(prepare, batches):  # decoding of the next batches overlaps each forward pass
            encoder.encode_pixels(p)
        sync()
        raw_s = time.perf_counter() - t0
    n = len(paths)
    return {"images": n, "decode_images_per_s": round(n / decode_s, 1),
            "model_images_per_s": round(done / model_s, 1), "raw_images_per_s": round(n / raw_s, 1)}


def measure_texts(encoder, texts: list[str], batch_size: int) -> dict:
    encoder.encode_texts(texts[:8], batch_size)
    sync = encoder._torch.cuda.synchronize if encoder.device == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    encoder.encode_texts(texts, batch_size)
    sync()
    return {"texts": len(texts), "texts_per_s": round(len(texts) / (time.perf_counter() - t0), 1)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="GPU throughput: raw model with parallel decode vs. backfill end to end")
    p.add_argument("--sample-dir", default=os.path.abspath(DEFAULT_SAMPLE))
    p.add_argument("--work-dir", default="data/bench-gpu")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--precision", choices=["fp16", "bf16", "fp32"], default="fp16")
    p.add_argument("--shape", choices=["vit-b-32", "tiny"], default="vit-b-32")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--decode-workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--limit", type=int, default=0, help="products (0 = the whole sample)")
    p.add_argument("--skip-e2e", action="store_true")
    p.add_argument("--e2e-warm-products", type=int, default=8,
                   help="bench.backfill_throughput --warm-products (0: a plumbing check, not a measurement)")
    args = p.parse_args(argv)
    if not os.path.isfile(os.path.join(args.sample_dir, "styles.csv")):
        sys.exit(f"no catalog at {args.sample_dir}: pass --sample-dir (Kaggle layout: styles.csv + images/)")

    import torch

    from fashion_catalog.encoders.clip import ClipEncoder
    from fashion_catalog.encoders.random_clip import build_random_clip

    work = os.path.abspath(args.work_dir)
    os.makedirs(work, exist_ok=True)
    paths = _image_paths(args.sample_dir, args.limit)
    model_dir = os.path.join(work, "models", f"clip-{args.shape}-random")
    if not os.path.isfile(os.path.join(model_dir, "model_card.json")):
        build_random_clip(model_dir, shape=args.shape)
    encoder = ClipEncoder(model_dir, precision=args.precision, device=args.device)
    result: dict = {
        "benchmark": "gpu_throughput", "model_shape": f"clip-{args.shape} (random weights)",
        "device": args.device, "precision": args.precision, "batch_size": args.batch_size,
        "decode_workers": args.decode_workers, "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
        "torch": torch.__version__,
    }
    result.update(measure_raw(encoder, paths, args.batch_size, args.decode_workers))
    texts = [os.path.basename(p) + " product photo" for p in paths]
    result.update(measure_texts(encoder, texts, args.batch_size))
    del encoder
    if not args.skip_e2e:
        cmd = [sys.executable, "-m", "bench.backfill_throughput", "--sample-dir", args.sample_dir,
               "--work-dir", os.path.join(work, "e2e"), "--limit", str(args.limit), "--device", args.device,
               "--precision", args.precision, "--shape", args.shape, "--image-batch-size", str(args.batch_size),
               "--text-batch-size", str(args.batch_size), "--skip-raw", "--warm-products", str(args.e2e_warm_products)]
        with tempfile.TemporaryFile("w+") as log:
            done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True, check=False)
            if done.returncode != 0:
                log.seek(0)
                sys.exit(f"backfill_throughput failed:\n{log.read()[-3000:]}")
        e2e = json.loads(done.stdout[done.stdout.index("{"):])["e2e"]
        result["e2e"] = e2e
        result["ratio_images_e2e_over_raw"] = round(e2e["images_per_s"] / result["raw_images_per_s"], 3)
        result["ratio_texts_e2e_over_raw"] = round(e2e["texts_per_s"] / result["texts_per_s"], 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
