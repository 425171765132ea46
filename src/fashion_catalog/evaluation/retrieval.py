"""Retrieval quality of a CLIP on the catalog's TEST split, against a random-weights floor.

Relevance comes from catalog labels. For the model in ``model.name_or_path`` and a
random-weights model of the same shape (same tokenizer and image processor: the
floor every number is read against), on the test split of the split the model was
trained with (seed and fractions from its model_card.json):

* text -> image: queries from (colour, article type) pairs present in the test split
  ("red dresses", "black formal shoes"), article type alone and colour alone;
  precision@10 and nDCG@10, relevant = same labels;
* image -> image: every test product as the query, same article type @10, same colour @10;
* hybrid vs text-only vs image-only on the same (colour, type) queries, the photo being
  one product of that pair (left out of its own results);
* zero-shot classification accuracy (article type, colour, usage) from label prompts;
* personas: pairwise overlap of top-20 recommendations, through the local index;
* natural-language queries (``evaluation/nl_queries.py``): every text-search mode side by side on the
  project's query set, test split and whole catalogue (trained model only).

Writes ``evaluation.json``, ``evaluation.html`` and ``evaluation.png`` and prints the JSON.
Usage: python -m fashion_catalog.jobs.evaluate [--set model.name_or_path=DIR] [--out DIR] [--min-support 3]
"""

from __future__ import annotations

import html
import json
import logging
import os
import tempfile
import time

import numpy as np
import pandas as pd

from fashion_catalog.catalog.reader import read_catalog_frame
from fashion_catalog.conf import Config
from fashion_catalog.encoders.clip import ClipEncoder
from fashion_catalog.encoders.images import ImageLimits
from fashion_catalog.encoders.model_card import read_model_card, write_model_card
from fashion_catalog.encoders.pixels import encode_pixel_array, load_pixels
from fashion_catalog.encoders.prompts import colour_type_query, zero_shot_prompt
from fashion_catalog.encoders.vectors import hybrid_vector
from fashion_catalog.evaluation.metrics import (
    mean_pairwise_overlap,
    ndcg_at_k,
    precision_at_k,
    same_label_at_k,
    top_k,
    zero_shot_accuracy,
)
from fashion_catalog.evaluation.nl_queries import MODES as NL_MODES
from fashion_catalog.evaluation.nl_queries import natural_language_report
from fashion_catalog.evaluation.split import with_splits
from fashion_catalog.indexes.local import LocalIndexStore
from fashion_catalog.personalization.personas import compute_user_features, load_personas, recommendation_filters

log = logging.getLogger(__name__)

# The targets on the test split (trained model).
TARGETS = {
    "text_to_image.colour_type.p_at_10": 0.25,
    "text_to_image.type.p_at_10": 0.45,
    "image_to_image.same_type_at_10": 0.6,
    "zero_shot.article_type.accuracy": 0.35,
}


def build_random_floor(model_dir: str, out_dir: str, seed: int = 0) -> str:
    """A random-weights CLIP with ``model_dir``'s architecture, tokenizer and image processor."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor

    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig.from_pretrained(model_dir)).eval()
    model.save_pretrained(out_dir)
    CLIPProcessor.from_pretrained(model_dir, use_fast=False).save_pretrained(out_dir)
    write_model_card(out_dir, {"weights": "random", "note": f"random floor with the shape of {model_dir}"})
    return out_dir


def embed_frame(encoder, frame: pd.DataFrame, limits) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image vectors, description vectors, image-ok mask) for the rows of ``frame``."""
    pixels, ok = load_pixels(encoder, frame["image_path"].tolist(), limits)
    img = encode_pixel_array(encoder, pixels)
    txt = encoder.encode_texts(frame["description"].fillna("").tolist())
    return img, txt, ok


def _text_queries(encoder, test: pd.DataFrame, img: np.ndarray, columns: list[str],
                  make_query, min_support: int) -> dict:
    labels = test[columns].fillna("").astype(str)
    counts = labels.value_counts()
    keys = [k if isinstance(k, tuple) else (k,) for k in counts[counts >= min_support].index]
    keys = [k for k in keys if all(v.strip() for v in k)]  # unlabelled products make no query
    if not keys:
        return {"queries": 0, "p_at_10": None, "ndcg_at_10": None}
    texts = [make_query(*k) for k in keys]
    qv = encoder.encode_texts(texts)
    top = top_k(qv @ img.T, 10)
    p, n = [], []
    values = labels.to_numpy()
    for key, row in zip(keys, top, strict=True):
        match = np.all(values == np.array(key, dtype=object), axis=1)
        rel = match[row]
        p.append(precision_at_k(rel))
        n.append(ndcg_at_k(rel, int(match.sum())))
    worst = sorted(zip(p, texts, strict=True))[:3]
    best = sorted(zip(p, texts, strict=True), reverse=True)[:3]
    return {"queries": len(keys), "p_at_10": round(float(np.mean(p)), 4), "ndcg_at_10": round(float(np.mean(n)), 4),
            "examples_best": [{"query": q, "p_at_10": v} for v, q in best],
            "examples_worst": [{"query": q, "p_at_10": v} for v, q in worst]}


def _hybrid_comparison(encoder, test: pd.DataFrame, img: np.ndarray, hyb: np.ndarray, weight: float,
                       min_support: int) -> dict:
    """P@10 on (colour, type) queries: text-only, image-only (one product's photo) and hybrid."""
    labels = test[["base_color", "article_type"]].fillna("").astype(str).to_numpy()
    pairs = pd.Series(list(map(tuple, labels))).value_counts()
    keys = [k for k, n in pairs.items() if n >= max(min_support, 2) and all(v.strip() for v in k)]
    if not keys:
        return {"queries": 0, "p_at_10": None}
    qt = encoder.encode_texts([colour_type_query(*k) for k in keys])
    scores = {"text_only": [], "image_only": [], "hybrid": []}
    for key, q in zip(keys, qt, strict=True):
        match = np.all(labels == np.array(key, dtype=object), axis=1)
        example = int(np.flatnonzero(match)[0])
        exclude = np.zeros(len(test), dtype=bool)
        exclude[example] = True
        hq = hybrid_vector(q, img[example], weight)
        for name, s in (("text_only", q @ img.T), ("image_only", img[example] @ img.T), ("hybrid", hq @ hyb.T)):
            row = top_k(s[None], 10, exclude=exclude[None])[0]
            scores[name].append(precision_at_k(match[row]))
    out = {name: round(float(np.mean(v)), 4) for name, v in scores.items()}
    return {"queries": len(keys), "p_at_10": out, "text_weight": weight,
            "hybrid_beats_text_only": out["hybrid"] > out["text_only"],
            "hybrid_beats_image_only": out["hybrid"] > out["image_only"]}


def _zero_shot(encoder, test: pd.DataFrame, img: np.ndarray, column: str) -> dict:
    truth = test[column].fillna("").astype(str).str.strip().to_numpy()
    labelled = truth != ""
    truth, img = truth[labelled], img[labelled]
    if not len(truth):
        return {"classes": 0}
    labels = sorted(set(truth))
    prompts = encoder.encode_texts([zero_shot_prompt(label) for label in labels])
    majority = pd.Series(truth).value_counts().iloc[0] / len(truth)
    return {"classes": len(labels), "products": int(len(truth)),
            "accuracy": round(zero_shot_accuracy(img, prompts, labels, truth), 4),
            "majority_class_rate": round(float(majority), 4)}


def _personas(test: pd.DataFrame, img: np.ndarray, txt: np.ndarray, hyb: np.ndarray) -> dict:
    store = LocalIndexStore.from_arrays(test, {"image": img, "text": txt, "hybrid": hyb},
                                        approximate_threshold=10**9)
    users = compute_user_features(load_personas(), test, hyb, np.ones(len(test), dtype=bool))
    recs = {}
    for user in users.to_dict("records"):
        if user["user_embedding"] is None:
            continue
        hits = store.search("hybrid", np.asarray(user["user_embedding"]), 20, recommendation_filters(user))
        recs[user["user_id"]] = [h["product_id"] for h in hits]
    overlap = mean_pairwise_overlap(recs)
    return {"users": len(recs), "top": 20, "mean_overlap": round(overlap["mean"], 4),
            "max_overlap": round(max(overlap["pairs"].values(), default=0.0), 4)}


def evaluate_encoder(encoder, test: pd.DataFrame, limits, text_weight: float, min_support: int,
                     embedded: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> dict:
    """Every metric of the report for one encoder on the test frame (``embedded``: its vectors, when already
    computed, as :func:`embed_frame` returns them)."""
    started = time.perf_counter()
    img, txt, ok = embedded if embedded is not None else embed_frame(encoder, test, limits)
    test, img, txt = test[ok].reset_index(drop=True), img[ok], txt[ok]
    hyb = hybrid_vector(txt, img, text_weight)
    report = {
        "text_to_image": {
            "colour_type": _text_queries(encoder, test, img, ["base_color", "article_type"], colour_type_query,
                                         min_support),
            "type": _text_queries(encoder, test, img, ["article_type"], zero_shot_prompt, min_support),
            "colour": _text_queries(encoder, test, img, ["base_color"], zero_shot_prompt, min_support),
        },
        "image_to_image": {
            "same_type_at_10": round(same_label_at_k(img, test["article_type"].astype(str)), 4),
            "same_colour_at_10": round(same_label_at_k(img, test["base_color"].astype(str)), 4),
        },
        "hybrid_vs_single": _hybrid_comparison(encoder, test, img, hyb, text_weight, min_support),
        "zero_shot": {c: _zero_shot(encoder, test, img, c) for c in ("article_type", "base_color", "usage")},
        "personas": _personas(test, img, txt, hyb),
        "products_scored": int(len(test)),
        "seconds": round(time.perf_counter() - started, 1),
    }
    return report


def _natural_language(config: Config, encoder, frame: pd.DataFrame, embedded: tuple, limits, weight: float,
                      min_support: int) -> dict:
    """The natural-language query report over every product with a readable image (all splits)."""
    started = time.perf_counter()
    img, txt, ok = embedded
    frame = frame[ok].reset_index(drop=True)
    vectors = {"image": img[ok], "text": txt[ok], "hybrid": hybrid_vector(txt[ok], img[ok], weight)}
    report = natural_language_report(config, encoder, frame, vectors, (frame["split"] == "test").to_numpy(), limits,
                                     min_support)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def _natural_language_html(report: dict) -> str:
    """The side-by-side table of the natural-language modes (held-out, tuning, all; test and catalogue)."""
    nl = report.get("natural_language")
    if not nl:
        return ""
    head = "".join(f"<th>{html.escape(f'{scope} {part}')}<br>P@10 / nDCG@10</th>"
                   for scope in nl["scopes"] for part in ("held_out", "tuning", "all"))
    rows = []
    for mode in NL_MODES:
        cells = []
        for scope in nl["scopes"].values():
            for part in ("held_out", "tuning", "all"):
                m = scope.get(part, {}).get(mode)
                cells.append(f"<td>{m['p_at_10']:.3f} / {m['ndcg_at_10']:.3f}</td>" if m else "<td></td>")
        label = nl.get("label_queries", {}).get(mode)
        cells.append(f"<td>{label['p_at_10']:.3f}</td>" if label else "<td></td>")
        rows.append(f"<tr><td>{html.escape(mode)}</td>{''.join(cells)}</tr>")
    target = nl["scopes"].get("test", {}).get("target", {})
    examples = "".join(f"<tr><td>{html.escape(e['query'])}</td><td><code>{html.escape(json.dumps(e['interpreted']))}"
                       f"</code></td></tr>" for e in nl.get("examples", []))
    return f"""<h2>Natural-language queries</h2>
<p>{nl['query_set']['queries']} queries ({nl['query_set']['held_out']} held out from tuning), judged by catalogue
labels. Target (test split, held out): fused + understanding beats the best single index
({html.escape(str(target.get('best_single_index')))}) by ≥ 0.10 P@10: margin {target.get('margin')},
{'met' if target.get('met') else 'MISSED'}.</p>
<table><tr><th>mode</th>{head}<th>label-only queries (test)<br>P@10</th></tr>{''.join(rows)}</table>
<h3>How queries are read</h3><table><tr><th>query</th><th>interpreted</th></tr>{examples}</table>"""


def _get(report: dict, dotted: str):
    for part in dotted.split("."):
        report = report[part]
    return report


def evaluate(spark, config: Config, out_dir: str | None = None, min_support: int = 3) -> dict:
    """Run the evaluation (see module docstring); returns the report and writes its files."""
    model_dir = config.model.name_or_path
    card = read_model_card(model_dir)
    split = card.get("split") or {"seed": config.training.seed, "fractions": list(config.training.split_fractions)}
    frame = with_splits(read_catalog_frame(spark, config), int(split["seed"]), tuple(split["fractions"]))
    test = frame[frame["split"] == "test"].reset_index(drop=True)
    if test.empty:
        raise ValueError(f"no test products in {config.tables.products}: load a catalog first")
    limits = ImageLimits.from_config(config)
    weight = config.hybrid_text_weight
    report = {
        "model": model_dir,
        "weights": card.get("weights", "unknown"),
        "model_card": {k: card.get(k) for k in ("base", "products", "steps", "epochs", "train_seconds") if k in card},
        "catalog": str(config.tables.products),
        "split": split,
        "test_products": int(len(test)),
        "min_support": min_support,
    }
    trained = ClipEncoder(model_dir, precision="fp32")
    # The whole catalogue is embedded once: the natural-language report reads every split, the rest the test one.
    embedded = embed_frame(trained, frame, limits)
    in_test = (frame["split"] == "test").to_numpy()
    report["trained"] = evaluate_encoder(trained, test, limits, weight, min_support,
                                         tuple(part[in_test] for part in embedded))
    report["natural_language"] = _natural_language(config, trained, frame, embedded, limits, weight, min_support)
    with tempfile.TemporaryDirectory() as tmp:
        floor = ClipEncoder(build_random_floor(model_dir, tmp), precision="fp32")
        report["random_floor"] = evaluate_encoder(floor, test, limits, weight, min_support)
    report["targets"] = judge_targets(report["trained"])
    hybrid = report["trained"]["hybrid_vs_single"]
    report["targets"]["hybrid_beats_text_only"] = {"met": bool(hybrid.get("hybrid_beats_text_only"))}
    out = out_dir or os.path.join(config.root, "reports", "evaluation")
    write_report_files(report, out)
    return report


def judge_targets(trained: dict) -> dict:
    """Each of :data:`TARGETS` with the trained model's value and whether it is met.

    A metric with no query of enough support (a small catalogue) is None: its target is not judged (None).
    """
    return {k: {"target": v, "value": (value := _get(trained, k)), "met": None if value is None else value >= v}
            for k, v in TARGETS.items()}


JUDGED = {True: "met", False: "MISSED", None: "not judged (no query with enough support)"}


def _rows(report: dict) -> list[tuple[str, float, float]]:
    keys = ["text_to_image.colour_type.p_at_10", "text_to_image.colour_type.ndcg_at_10", "text_to_image.type.p_at_10",
            "text_to_image.colour.p_at_10", "image_to_image.same_type_at_10", "image_to_image.same_colour_at_10",
            "hybrid_vs_single.p_at_10.text_only", "hybrid_vs_single.p_at_10.image_only",
            "hybrid_vs_single.p_at_10.hybrid", "zero_shot.article_type.accuracy", "zero_shot.base_color.accuracy",
            "zero_shot.usage.accuracy", "personas.mean_overlap"]
    rows = []
    for k in keys:
        try:
            rows.append((k, float(_get(report["trained"], k)), float(_get(report["random_floor"], k))))
        except (KeyError, TypeError):
            continue
    return rows


def write_report_files(report: dict, out_dir: str) -> dict[str, str]:
    """evaluation.json, a bar chart (trained vs floor) and an HTML page with both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(out_dir, f"evaluation.{name}") for name in ("json", "png", "html")}
    with open(paths["json"], "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2, default=str)
    rows = _rows(report)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.2))
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [r[1] for r in rows], 0.4, label="trained", color="#2b6cb0")
    ax.barh(y + 0.2, [r[2] for r in rows], 0.4, label="random floor", color="#a0aec0")
    ax.set_yticks(y, [r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.legend(loc="lower right")
    ax.set_title(f"test split, {report['test_products']} products")
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=110)
    plt.close(fig)
    table = "".join(f"<tr><td>{html.escape(k)}</td><td>{t:.4f}</td><td>{f:.4f}</td></tr>" for k, t, f in rows)
    targets = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v.get('target', '')}</td><td>{v.get('value', '')}</td>"
        f"<td>{JUDGED[v['met']]}</td></tr>" for k, v in report["targets"].items())
    page = f"""<!doctype html><meta charset="utf-8"><title>CLIP evaluation</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 10px;border-bottom:1px solid #ddd}}</style>
<h1>Retrieval quality on the test split</h1>
<p>Model <code>{html.escape(str(report['model']))}</code> (weights: {html.escape(str(report['weights']))}),
catalog <code>{html.escape(report['catalog'])}</code>, {report['test_products']} test products.</p>
<h2>Targets</h2><table><tr><th>metric</th><th>target</th><th>trained</th><th></th></tr>{targets}</table>
<h2>Trained vs random floor</h2><table><tr><th>metric</th><th>trained</th><th>random floor</th></tr>{table}</table>
<img src="evaluation.png" alt="bar chart">
{_natural_language_html(report)}
<h2>Full report</h2><pre>{html.escape(json.dumps(report, indent=2, default=str))}</pre>"""
    with open(paths["html"], "w", encoding="utf-8") as fh:
        fh.write(page)
    return paths
