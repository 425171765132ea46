"""Latent-feature analysis of the multimodal table, as a catalog-QA report.

Reads the vectors the embedder wrote to ``product_embeddings_multimodal`` (through
the local index's Delta reader; no JVM) and the model that wrote them:

* alignment: per product, the cosine of its text and image vectors; the worst-aligned
  products are the first to check (a wrong image, wrong labels, or an odd photo);
* zero-shot disagreements: article type and colour predicted from the image vector
  by label prompts that differ from the catalog's labels, most confident first;
* clusters (k-means on image vectors) with their dominant article types, and a 2-D
  projection (PCA) coloured by category, as PNG and in the HTML page;
* near-duplicate images: pairs of products whose image vectors are (almost) the same
  but whose names or labels differ.

Writes ``latents.json``, ``latents.html`` and ``latents_projection.png``.
Usage: python -m fashion_catalog.jobs.analyze_latents [--set model.name_or_path=DIR] [--out DIR] [--top 20]
"""

from __future__ import annotations

import html
import json
import logging
import os

import numpy as np
import pandas as pd

from fashion_catalog.conf import Config
from fashion_catalog.encoders.clip import ClipEncoder
from fashion_catalog.encoders.prompts import zero_shot_prompt
from fashion_catalog.indexes.local import LocalIndexStore

log = logging.getLogger(__name__)

REPORT_COLUMNS = ["product_id", "product_display_name", "article_type", "base_color", "master_category",
                  "image_path"]


def alignment_scores(text: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (n, d) matrices (unit vectors are not assumed)."""
    num = np.sum(text * image, axis=1)
    den = np.linalg.norm(text, axis=1) * np.linalg.norm(image, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def zero_shot_disagreements(meta: pd.DataFrame, image: np.ndarray, column: str, prompt_vectors: np.ndarray,
                            labels: list[str], temperature: float = 100.0) -> pd.DataFrame:
    """Rows whose predicted ``column`` label differs from the catalog's, most confident first.

    ``probability`` is the prediction's softmax probability (CLIP's temperature);
    ``margin`` is how much closer the image is to the predicted label's prompt than to
    its catalog label's, which still ranks rows once probabilities saturate at 1.
    """
    sims = image @ prompt_vectors.T
    logits = temperature * sims
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    best = probs.argmax(axis=1)
    predicted = np.asarray(labels, dtype=object)[best]
    truth = meta[column].astype(str).to_numpy()
    position = {label: i for i, label in enumerate(labels)}
    truth_idx = np.array([position.get(t, -1) for t in truth])
    rows = np.arange(len(best))
    truth_sim = np.where(truth_idx >= 0, sims[rows, np.maximum(truth_idx, 0)], np.nan)
    frame = meta[REPORT_COLUMNS].copy()
    frame["catalog_label"] = truth
    frame["predicted"] = predicted
    frame["probability"] = probs[rows, best]
    frame["margin"] = sims[rows, best] - truth_sim
    frame = frame[frame["catalog_label"] != frame["predicted"]]
    return frame.sort_values("margin", ascending=False)


def near_duplicates(meta: pd.DataFrame, image: np.ndarray, threshold: float) -> pd.DataFrame:
    """Pairs of products with image cosine >= threshold whose display names or labels differ."""
    import faiss

    vecs = np.ascontiguousarray(image, dtype=np.float32)
    index = faiss.IndexFlatIP(vecs.shape[1])
    index.add(vecs)
    lims, dist, ids = index.range_search(vecs, float(threshold))
    rows = []
    pid = meta["product_id"].to_numpy()
    for i in range(len(vecs)):
        for j, d in zip(ids[lims[i] : lims[i + 1]], dist[lims[i] : lims[i + 1]], strict=True):
            if j <= i:
                continue
            a, b = meta.iloc[i], meta.iloc[int(j)]
            differs = [c for c in ("product_display_name", "article_type", "base_color") if str(a[c]) != str(b[c])]
            if differs:
                rows.append({"product_a": int(pid[i]), "product_b": int(pid[j]), "cosine": round(float(d), 5),
                             "name_a": a["product_display_name"], "name_b": b["product_display_name"],
                             "differs_in": differs, "same_image_file": str(a["image_path"]) == str(b["image_path"])})
    return pd.DataFrame(rows).sort_values("cosine", ascending=False) if rows else pd.DataFrame(rows)


def clusters(image: np.ndarray, meta: pd.DataFrame, k: int, seed: int = 0) -> list[dict]:
    """k-means on image vectors; per cluster its size, purity and three most common article types."""
    import faiss

    km = faiss.Kmeans(image.shape[1], k, niter=25, seed=seed, spherical=True)
    km.train(np.ascontiguousarray(image, dtype=np.float32))
    _, assign = km.index.search(np.ascontiguousarray(image, dtype=np.float32), 1)
    out = []
    for c in range(k):
        members = meta[assign[:, 0] == c]
        if members.empty:
            continue
        top = members["article_type"].astype(str).value_counts()
        out.append({"cluster": c, "size": int(len(members)), "purity": round(float(top.iloc[0] / len(members)), 3),
                    "top_article_types": {t: int(n) for t, n in top.head(3).items()}})
    return sorted(out, key=lambda r: -r["size"])


def projection_2d(vectors: np.ndarray) -> np.ndarray:
    """PCA to two dimensions (numpy SVD of the centred vectors)."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def analyze(config: Config, out_dir: str | None = None, top: int = 20, duplicate_threshold: float = 0.995,
            k: int = 20) -> dict:
    """Build the report from the embeddings table (see module docstring); returns it and writes its files."""
    store = LocalIndexStore(config.tables.embeddings.path, config.model.dimension, approximate_threshold=10**9)
    store.sync()
    meta, image, has_image = store.live_rows("image")
    _, text, has_text = store.live_rows("text")
    both = has_image & has_text
    meta, image, text = meta[both].reset_index(drop=True), image[both], text[both]
    if len(meta) < 2:
        raise ValueError(f"{config.tables.embeddings} has {len(meta)} products with both vectors: run the embedder")
    models = meta["embedding_model"].astype(str).value_counts()
    if config.model.id not in models.index:
        log.warning("vectors were written by %s, prompts use %s (%s)", dict(models), config.model.id,
                    config.model.name_or_path)
    encoder = ClipEncoder(config.model.name_or_path, precision="fp32")

    align = alignment_scores(text, image)
    meta = meta.assign(alignment=align)
    worst = meta.sort_values("alignment").head(top)
    report: dict = {
        "table": str(config.tables.embeddings),
        "model": config.model.name_or_path,
        "embedding_models": {str(m): int(n) for m, n in models.items()},
        "products": int(len(meta)),
        "alignment": {"mean": round(float(np.nanmean(align)), 4), "p05": round(float(np.nanpercentile(align, 5)), 4),
                      "p50": round(float(np.nanpercentile(align, 50)), 4)},
        "worst_aligned": _records(worst, REPORT_COLUMNS + ["alignment"]),
    }
    disagreements = {}
    for column in ("article_type", "base_color"):
        labels = sorted(meta[column].dropna().astype(str).unique())
        prompts = encoder.encode_texts([zero_shot_prompt(label) for label in labels])
        frame = zero_shot_disagreements(meta, image, column, prompts, labels)
        disagreements[column] = {"count": int(len(frame)), "share": round(len(frame) / len(meta), 4),
                                 "most_confident": _records(frame.head(top), REPORT_COLUMNS + [
                                     "catalog_label", "predicted", "probability", "margin"])}
    report["zero_shot_disagreements"] = disagreements
    report["clusters"] = clusters(image, meta, min(k, max(2, len(meta) // 10)))
    dups = near_duplicates(meta, image, duplicate_threshold)
    report["near_duplicates"] = {"threshold": duplicate_threshold, "pairs": int(len(dups)),
                                 "top": dups.head(top).to_dict("records") if len(dups) else []}
    out = out_dir or os.path.join(config.root, "reports", "latents")
    write_files(report, meta, image, out)
    return report


def _records(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    out = []
    for row in frame[columns].to_dict("records"):
        out.append({k: (round(float(v), 4) if isinstance(v, float | np.floating) else
                        int(v) if isinstance(v, np.integer) else v) for k, v in row.items()})
    return out


def write_files(report: dict, meta: pd.DataFrame, image: np.ndarray, out_dir: str) -> dict[str, str]:
    """latents.json, the 2-D projection PNG and an HTML page."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, "latents.json"), "png": os.path.join(out_dir, "latents_projection.png"),
             "html": os.path.join(out_dir, "latents.html")}
    with open(paths["json"], "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2, default=str)
    xy = projection_2d(image)
    groups = meta["master_category"].fillna("unknown").astype(str)
    fig, ax = plt.subplots(figsize=(8, 7))
    for i, (name, idx) in enumerate(groups.groupby(groups).groups.items()):
        ax.scatter(xy[idx, 0], xy[idx, 1], s=4, alpha=0.6, label=f"{name} ({len(idx)})", color=plt.cm.tab10(i % 10))
    ax.legend(markerscale=3, fontsize=8)
    ax.set_title("image vectors, PCA 2-D, by master category")
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=110)
    plt.close(fig)

    def table(rows: list[dict]) -> str:
        if not rows:
            return "<p>none</p>"
        cols = list(rows[0])
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in cols) + "</tr>" for r in rows)
        return f"<table><tr>{head}</tr>{body}</table>"

    dis = report["zero_shot_disagreements"]
    page = f"""<!doctype html><meta charset="utf-8"><title>Catalog QA: latent analysis</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;border-bottom:1px solid #ddd;font-size:13px}}
</style><h1>Catalog QA from the embeddings</h1>
<p>{report['products']} products from <code>{html.escape(report['table'])}</code>, model
<code>{html.escape(report['model'])}</code>. Text-image alignment: mean {report['alignment']['mean']},
median {report['alignment']['p50']}, 5th percentile {report['alignment']['p05']}.</p>
<h2>Worst-aligned products (check image and labels)</h2>{table(report['worst_aligned'])}
<h2>Zero-shot article type disagrees with the catalog ({dis['article_type']['count']})</h2>
{table(dis['article_type']['most_confident'])}
<h2>Zero-shot colour disagrees with the catalog ({dis['base_color']['count']})</h2>
{table(dis['base_color']['most_confident'])}
<h2>Near-duplicate images with different names or labels ({report['near_duplicates']['pairs']} pairs)</h2>
{table(report['near_duplicates']['top'])}
<h2>Clusters</h2>{table(report['clusters'])}
<h2>2-D projection</h2><img src="latents_projection.png" alt="projection">"""
    with open(paths["html"], "w", encoding="utf-8") as fh:
        fh.write(page)
    return paths
