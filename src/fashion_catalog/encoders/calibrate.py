"""``model.precision: auto``: time every inference path on the probe set and keep the fastest faithful one.

The processor differs from one machine to the next (AMX on one, AVX-512 BF16 on another,
neither on a third), and so does the fastest path. At load, each candidate encodes the
probe set of :mod:`encoders.probe` (32 images, 64 descriptions) after a warm-up call; a
candidate passes when every probe vector has cosine >= ``MIN_COSINE`` to fp32's; the passing
candidate with the best product rate (one image and one description per product) wins.
The table is logged and cached per model, machine and library versions (the next process
on this machine builds only the chosen path): ``$FASHION_CALIBRATION_CACHE`` or
``~/.cache/fashion-catalog/calibration``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import tempfile
import time

import numpy as np

from fashion_catalog.conf.precisions import candidates

log = logging.getLogger(__name__)

MIN_COSINE = 0.999
CACHE_ENV = "FASHION_CALIBRATION_CACHE"


def processor_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags from /proc/cpuinfo (read once per process); empty where unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            return frozenset(fh.read().split())
    except OSError:
        return frozenset()


def cache_dir() -> str:
    """Where measurements per machine are cached: ``$FASHION_CALIBRATION_CACHE``, else
    ~/.cache/fashion-catalog/calibration."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "fashion-catalog",
                                                     "calibration")


def _cache_path(encoder) -> str:
    import torch

    try:
        import openvino

        ov_version = openvino.__version__
    except ImportError:  # pragma: no cover - pinned
        ov_version = "none"
    from fashion_catalog.encoders.onnx_int8 import has_vnni
    from fashion_catalog.encoders.openvino_towers import IR_VERSION

    # "AMD EPYC" names AVX2-only and AVX-512 VNNI parts alike; their int8 paths differ (encoders/onnx_int8.py).
    key = [f"ir{IR_VERSION}", encoder.name_or_path, encoder.device, str(encoder._threads), processor_name(),
           f"vnni={has_vnni()}",
           str(os.cpu_count()), torch.__version__, ov_version]
    if os.path.isdir(encoder.name_or_path):
        for f in sorted(os.listdir(encoder.name_or_path)):
            p = os.path.join(encoder.name_or_path, f)
            if os.path.isfile(p):
                key.append(f"{f}:{os.path.getsize(p)}:{int(os.path.getmtime(p))}")
    return os.path.join(cache_dir(), hashlib.sha256("|".join(key).encode()).hexdigest()[:16] + ".json")


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum(axis=1).min())  # both are unit vectors


def measure(encoder, precision: str, images: list, texts: list[str],
            reference: tuple | None) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """One candidate's row: img/s, texts/s, products/s and min cosine to ``reference`` (fp32's vectors)."""
    t_build = time.perf_counter()
    encoder.use_precision(precision)
    build_s = time.perf_counter() - t_build
    encoder.encode_images(images[:2], 2)  # first calls allocate and compile
    encoder.encode_texts(texts[:2], 2)
    t0 = time.perf_counter()
    image_vectors = encoder.encode_images(images, 16)
    t1 = time.perf_counter()
    text_vectors = encoder.encode_texts(texts, 32)
    t2 = time.perf_counter()
    images_per_s, texts_per_s = len(images) / (t1 - t0), len(texts) / (t2 - t1)
    row = {"precision": precision, "images_per_s": round(images_per_s, 1), "texts_per_s": round(texts_per_s, 1),
           "products_per_s": round(1 / (1 / images_per_s + 1 / texts_per_s), 1), "build_s": round(build_s, 1)}
    if reference is None:
        row.update(image_cosine_min=1.0, text_cosine_min=1.0)
    else:
        row.update(image_cosine_min=round(_min_cosine(image_vectors, reference[0]), 6),
                   text_cosine_min=round(_min_cosine(text_vectors, reference[1]), 6))
    row["faithful"] = min(row["image_cosine_min"], row["text_cosine_min"]) >= MIN_COSINE
    return row, (image_vectors, text_vectors)


def calibrate(encoder, candidates: tuple[str, ...]) -> list[dict]:
    """Measure every candidate on the probe set (fp32 first: the reference); failures become rows too."""
    from fashion_catalog.encoders.probe import probe_images, probe_texts

    images, texts = probe_images(), probe_texts()
    rows, reference = [], None
    for precision in candidates:
        try:
            row, vectors = measure(encoder, precision, images, texts, reference)
        except Exception as exc:  # noqa: BLE001 - a path this machine cannot run is not a candidate
            log.warning("precision %s unavailable here: %s", precision, exc)
            rows.append({"precision": precision, "error": f"{type(exc).__name__}: {exc}"[:300], "faithful": False})
            continue
        if reference is None:
            reference = vectors
        rows.append(row)
    return rows


def best(rows: list[dict]) -> str:
    """The faithful candidate with the best product rate (fp32 when nothing else passes)."""
    faithful = [r for r in rows if r.get("faithful")]
    return max(faithful, key=lambda r: r["products_per_s"])["precision"] if faithful else "fp32"


def choose_precision(encoder) -> tuple[list[dict], str]:
    """Calibrate (or read this machine's cached calibration), switch ``encoder`` to the winner, log the table."""
    path = _cache_path(encoder)
    rows = None
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as fh:
                rows = json.load(fh)["rows"]
            log.info("precision calibration read from %s", path)
        except (OSError, ValueError, KeyError):
            rows = None
    if rows is None:
        rows = calibrate(encoder, candidates(encoder.device))
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(path), delete=False, suffix=".tmp") as fh:
                json.dump({"processor": processor_name(), "cpu_count": os.cpu_count(), "rows": rows}, fh, indent=1)
            os.replace(fh.name, path)
        except OSError as exc:
            log.warning("could not cache the precision calibration at %s: %s", path, exc)
    chosen = best(rows)
    for r in rows:
        log.info("calibration %-14s %s", r["precision"], {k: v for k, v in r.items() if k != "precision"})
    rate = next((r for r in rows if r["precision"] == chosen), {})
    log.info("model.precision auto -> %s on %s (%s products/s, %s img/s, %s texts/s)", chosen, processor_name(),
             rate.get("products_per_s"), rate.get("images_per_s"), rate.get("texts_per_s"))
    if encoder.precision != chosen:
        encoder.use_precision(chosen)
    return rows, chosen
