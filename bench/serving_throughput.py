"""Benchmark: texts/s and images/s through a local MLflow scoring server vs. in-process.

Registers the encoder (a ViT-B/32-shaped random-weights CLIP by default), starts
`mlflow models serve` on loopback, embeds the same inputs through EndpointEncoder
and through the in-process encoder, and prints one JSON object with both rates,
their ratios and the cosine agreement.
Usage: python -m bench.serving_throughput [--n-images 256] [--n-texts 512] [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import socket
import subprocess
import sys
import time

DEFAULT_SAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "fashion-sample")


def _serve(model_uri: str, tracking_uri: str) -> tuple[subprocess.Popen, str]:
    import requests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri,
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "-h", "127.0.0.1",
                             "-p", str(port), "--env-manager", "local"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if requests.get(f"{base}/ping", timeout=2).status_code == 200:
                return proc, f"{base}/invocations"
        except requests.ConnectionError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("scoring server did not start")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sample-dir", default=os.path.abspath(DEFAULT_SAMPLE))
    p.add_argument("--work-dir", default="data/bench-serving")
    p.add_argument("--model-dir", help="CLIP folder (default: a ViT-B/32-shaped random model built here)")
    p.add_argument("--precision", choices=["fp32", "bf16", "int8"], default="fp32")
    p.add_argument("--n-images", type=int, default=256)
    p.add_argument("--n-texts", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args(argv)

    from fashion_catalog.catalog.parser import parse_styles_csv
    from fashion_catalog.conf import load_config
    from fashion_catalog.encoders.clip import ClipEncoder
    from fashion_catalog.encoders.endpoint import EndpointEncoder
    from fashion_catalog.encoders.images import ImageLimits, load_image
    from fashion_catalog.encoders.random_clip import build_random_clip
    from fashion_catalog.encoders.registry import register_model

    work = os.path.abspath(args.work_dir)
    rows = parse_styles_csv(os.path.join(args.sample_dir, "styles.csv")).rows
    texts = [f"{r['product_display_name']}, {r['base_color']} {r['article_type']}".lower() for r in rows]
    texts = texts[: args.n_texts]
    model_dir = args.model_dir or os.path.join(work, "models", "clip-vit-b-32-random")
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        build_random_clip(model_dir, shape="vit-b-32", corpus=texts)
    paths = sorted(glob.glob(os.path.join(args.sample_dir, "images", "*.jpg")))[: args.n_images]

    config = load_config("local", base_dir=work, overrides={
        "storage.root": work, "model.name_or_path": model_dir, "model.precision": args.precision,
        "model.torch_threads": os.cpu_count() or 2, "mlflow.experiment": "bench-serving"})
    images = [load_image(p, ImageLimits.from_config(config)) for p in paths]
    info = register_model(config)
    local = ClipEncoder(model_dir, precision=args.precision, torch_threads=os.cpu_count() or 2)
    local.encode_texts(texts[:8])
    local.encode_images(images[:8])

    def rate(fn, items):
        t = time.perf_counter()
        out = fn(items, args.batch_size)
        return out, len(items) / (time.perf_counter() - t)

    in_t, in_t_rate = rate(local.encode_texts, texts)
    in_i, in_i_rate = rate(local.encode_images, images)
    del local
    proc, url = _serve(info["registered_uri"], config.mlflow.tracking_uri)
    try:
        # One request at a time per batch: the server has one worker on the same 2 cores.
        endpoint = EndpointEncoder(url, token_env=None, batch_size=args.batch_size, max_concurrency=1)
        endpoint.encode_texts(texts[:8])
        endpoint.encode_images(images[:8])
        ep_t, ep_t_rate = rate(endpoint.encode_texts, texts)
        ep_i, ep_i_rate = rate(endpoint.encode_images, images)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(json.dumps({
        "benchmark": "serving_throughput",
        "model": "clip-vit-b-32 shape, random weights" if not args.model_dir else model_dir,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "texts": len(texts), "images": len(images),
        "in_process": {"texts_per_s": round(in_t_rate, 2), "images_per_s": round(in_i_rate, 2)},
        "scoring_server": {"texts_per_s": round(ep_t_rate, 2), "images_per_s": round(ep_i_rate, 2)},
        "ratio_server_vs_in_process": {"texts": round(ep_t_rate / in_t_rate, 3),
                                       "images": round(ep_i_rate / in_i_rate, 3)},
        "cosine_min": {"texts": round(float((ep_t * in_t).sum(1).min()), 6),
                       "images": round(float((ep_i * in_i).sum(1).min()), 6)},
    }, indent=2))


if __name__ == "__main__":
    main()
