"""The embedded local vector index: three indexes (image, text, hybrid) over the multimodal table.

It follows the Delta table the way a Databricks Delta Sync index does: an initial
load of a snapshot, then the table's Change Data Feed applied since the last
synced version (inserts, updates, deletes), read with the ``deltalake`` package:
no JVM at query time. Search is exact cosine (vectors are unit length) and
switches to a FAISS approximate index (IVF-Flat by default, see ``search/ann.py``)
above ``approximate_threshold`` rows; filters in the Databricks dialect are applied
to the candidates before ranking (exactly when few rows match, inside the
approximate scan otherwise).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from schemas import FILTER_COLUMNS, INDEX_KINDS, METADATA_COLUMNS
from schemas.change_feed import DELETE, STATE_CHANGES
from search.ann import AnnIndex, AnnParams
from search.filters import evaluate, parse_filters

log = logging.getLogger(__name__)

__all__ = ["FILTER_COLUMNS", "INDEX_KINDS", "METADATA_COLUMNS", "IndexNotReadyError", "LocalIndexStore",
           "final_changes"]


class IndexNotReadyError(RuntimeError):
    """The index has not loaded its table yet (or the table does not exist)."""


@dataclass
class SyncStatus:
    synced_version: int | None
    table_version: int | None
    lag_versions: int | None
    rows: int
    last_sync_at: float | None
    last_applied_changes: int
    approximate: dict


def _vectors(column: pa.ChunkedArray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) float32 matrix and a has-vector mask from an Arrow list column."""
    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(col)
    present = ~np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    out = np.zeros((n, dim), dtype=np.float32)
    if present.any():
        flat = pc.list_flatten(col.filter(pa.array(present))).to_numpy(zero_copy_only=False)
        out[present] = flat.astype(np.float32).reshape(-1, dim)
    return out, present


class LocalIndexStore:
    """In-memory mirror of the multimodal table with one vector matrix per index kind."""

    def __init__(self, table_path: str, dimension: int = 512, approximate_threshold: int = 100_000,
                 ann: AnnParams | None = None, exact_max_candidates: int = 20_000):
        self.table_path = table_path
        self.dim = dimension
        self.approximate_threshold = approximate_threshold
        self.ann_params = ann or AnnParams()
        # Filtered queries with at most this many matching rows are ranked exactly.
        self.exact_max_candidates = exact_max_candidates
        self._lock = threading.RLock()
        self._meta = pd.DataFrame(columns=METADATA_COLUMNS)
        self._vecs = {k: np.zeros((0, dimension), np.float32) for k in INDEX_KINDS}
        self._has = {k: np.zeros(0, bool) for k in INDEX_KINDS}
        self._alive = np.zeros(0, bool)
        self._slot: dict[int, int] = {}
        self._ann: dict[str, AnnIndex] = {}
        self.synced_version: int | None = None
        self.table_version: int | None = None
        self.last_sync_at: float | None = None
        self.last_applied = 0

    @classmethod
    def from_arrays(cls, meta: pd.DataFrame, vectors: dict[str, np.ndarray], **kwargs) -> LocalIndexStore:
        """An index over in-memory rows (benchmarks; no table to follow). Missing kinds stay empty."""
        store = cls(table_path="<memory>", dimension=next(iter(vectors.values())).shape[1], **kwargs)
        n = len(meta)
        store._meta = _arrow_strings(meta.reset_index(drop=True).reindex(columns=METADATA_COLUMNS))
        for kind in INDEX_KINDS:
            v = vectors.get(kind)
            store._vecs[kind] = np.ascontiguousarray(v, dtype=np.float32) if v is not None else np.zeros((n, 0))
            store._has[kind] = np.full(n, v is not None)
        store._alive = np.ones(n, bool)
        store._slot = {int(pid): i for i, pid in enumerate(store._meta["product_id"].to_numpy())}
        store.synced_version = store.table_version = 0
        if n >= store.approximate_threshold:
            for kind in vectors:
                store._ann[kind] = AnnIndex(store._vecs[kind], store.ann_params)
        return store

    # -- sync ------------------------------------------------------------------------------
    def sync(self) -> SyncStatus:
        """Bring the index up to the table's latest version (initial load, then CDF)."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            table = DeltaTable(self.table_path)
        except TableNotFoundError:
            raise IndexNotReadyError(f"no Delta table at {self.table_path}: run the embedder first") from None
        latest = table.version()
        with self._lock:
            self.table_version = latest
            if self.synced_version is None:
                self._initial_load(table, latest)
            elif latest > self.synced_version:
                self._apply_changes(table, self.synced_version + 1, latest)
            else:
                self.last_applied = 0
            self.synced_version = latest
            self.last_sync_at = time.time()
            self._maybe_build_ann()
            return self.status()

    def _select(self, table, version: int) -> pa.Table:
        from deltalake import DeltaTable, QueryBuilder

        snap = DeltaTable(self.table_path, version=version)
        cols = ", ".join(f"`{c}`" for c in METADATA_COLUMNS + list(INDEX_KINDS.values()))
        # QueryBuilder (DataFusion) reads deletion vectors, which the pyarrow dataset path does not.
        reader = QueryBuilder().register("t", snap).execute(f"SELECT {cols} FROM t")
        return _plain_types(pa.table(reader.read_all()))

    def _initial_load(self, table, version: int) -> None:
        data = self._select(table, version)
        self._reset()
        self._append(data)
        self.last_applied = data.num_rows
        log.info("local index loaded %d rows at version %d", data.num_rows, version)

    def _apply_changes(self, table, start: int, end: int) -> None:
        changes = _plain_types(pa.table(table.load_cdf(starting_version=start, ending_version=end).read_all()))
        final = final_changes(changes.select(["product_id", "_change_type", "_commit_version"]).to_pandas())
        for pid in final["product_id"]:
            slot = self._slot.pop(int(pid), None)
            if slot is not None:
                self._alive[slot] = False
        upserts = final[final["_live"]]["_row"].to_numpy()
        if len(upserts):
            self._append(changes.take(pa.array(upserts)).select(METADATA_COLUMNS + list(INDEX_KINDS.values())))
        self.last_applied = len(final)
        # Too many dead slots: compact (and rebuild any approximate index).
        if len(self._alive) > 1000 and (~self._alive).sum() > 0.3 * len(self._alive):
            self._compact()

    def _reset(self) -> None:
        self._meta = pd.DataFrame(columns=METADATA_COLUMNS)
        self._vecs = {k: np.zeros((0, self.dim), np.float32) for k in INDEX_KINDS}
        self._has = {k: np.zeros(0, bool) for k in INDEX_KINDS}
        self._alive = np.zeros(0, bool)
        self._slot = {}
        self._ann = {}

    def _append(self, data: pa.Table) -> None:
        start = len(self._alive)
        meta = _arrow_strings(data.select(METADATA_COLUMNS).to_pandas())
        meta.index = range(start, start + len(meta))
        self._meta = pd.concat([self._meta, meta]) if len(self._meta) else meta
        for kind, col in INDEX_KINDS.items():
            vecs, has = _vectors(data.column(col), self.dim)
            self._vecs[kind] = np.concatenate([self._vecs[kind], vecs])
            self._has[kind] = np.concatenate([self._has[kind], has])
            if kind in self._ann:
                self._ann[kind].add(vecs)  # ids stay equal to slots
        self._alive = np.concatenate([self._alive, np.ones(len(meta), bool)])
        for offset, pid in enumerate(meta["product_id"].to_numpy()):
            self._slot[int(pid)] = start + offset

    def _compact(self) -> None:
        keep = np.flatnonzero(self._alive)
        self._meta = self._meta.iloc[keep].reset_index(drop=True)
        for kind in INDEX_KINDS:
            self._vecs[kind] = self._vecs[kind][keep]
            self._has[kind] = self._has[kind][keep]
        self._alive = np.ones(len(keep), bool)
        self._slot = {int(pid): i for i, pid in enumerate(self._meta["product_id"].to_numpy())}
        self._ann = {}

    def _maybe_build_ann(self) -> None:
        if int(self._alive.sum()) < self.approximate_threshold:
            self._ann = {}
            return
        for kind in INDEX_KINDS:
            if kind not in self._ann or self._ann[kind].stale:
                self._ann[kind] = AnnIndex(self._vecs[kind], self.ann_params)

    # -- queries ---------------------------------------------------------------------------
    def status(self) -> SyncStatus:
        lag = None if self.synced_version is None or self.table_version is None else \
            self.table_version - self.synced_version
        return SyncStatus(self.synced_version, self.table_version, lag, int(self._alive.sum()), self.last_sync_at,
                          self.last_applied, {k: k in self._ann for k in INDEX_KINDS})

    def health(self) -> dict:
        """The sync status as the service reports it (see :mod:`search.store`)."""
        status = asdict(self.status())
        return dict(status, backend="local", ready=self.synced_version is not None)

    def get(self, product_id: int) -> dict | None:
        with self._lock:
            slot = self._slot.get(int(product_id))
            return None if slot is None else _clean(self._meta.loc[slot].to_dict())

    def live_rows(self, kind: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """A consistent copy of (metadata, vectors of ``kind``, has-live-vector mask), one row per slot."""
        with self._lock:
            return (self._meta.reset_index(drop=True), self._vecs[kind].copy(),
                    self._has[kind] & self._alive)

    def distinct_values(self, column: str, limit: int = 200) -> list[str]:
        """The most frequent values of a metadata column among live rows, sorted."""
        with self._lock:
            meta = self._meta[self._alive[: len(self._meta)]]
            values = meta[column].dropna().astype(str).value_counts().index[:limit]
        return sorted(values)

    def vector(self, product_id: int, kind: str) -> np.ndarray | None:
        with self._lock:
            slot = self._slot.get(int(product_id))
            if slot is None or not self._has[kind][slot]:
                return None
            return self._vecs[kind][slot].copy()

    def search(self, kind: str, query: np.ndarray, k: int = 10, filters: dict | None = None,
               exact: bool | None = None) -> list[dict]:
        """Top-k rows of index ``kind`` by cosine to ``query``, each with all metadata and ``score``."""
        if kind not in INDEX_KINDS:
            raise ValueError(f"unknown index {kind!r}; one of {sorted(INDEX_KINDS)}")
        conditions = parse_filters(filters, FILTER_COLUMNS)
        if self.synced_version is None:
            raise IndexNotReadyError("the index has not been synced yet")
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.dim:
            raise ValueError(f"query has {q.shape[0]} dimensions, the index {self.dim}")
        with self._lock:
            valid = self._alive & self._has[kind]
            if conditions:
                valid &= evaluate(conditions, self._meta)
            candidates = int(valid.sum())
            if candidates == 0:
                return []
            use_ann = kind in self._ann and not exact and (not conditions or candidates > self.exact_max_candidates)
            if use_ann:
                slots, scores = self._ann[kind].search(q, k, valid)
            else:
                idx = np.flatnonzero(valid)
                sims = self._vecs[kind][idx] @ q if conditions else (self._vecs[kind] @ q)[idx]
                top = np.argpartition(-sims, min(k, len(sims)) - 1)[:k] if len(sims) > k else np.arange(len(sims))
                top = top[np.argsort(-sims[top])]
                slots, scores = idx[top], sims[top]
            rows = self._meta.loc[slots].to_dict("records")
        return [dict(_clean(r), score=float(s)) for r, s in zip(rows, scores, strict=True)]


def final_changes(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per product_id: its final state in a CDF frame (the rule of :mod:`schemas.change_feed`).

    The pandas twin of ``streaming.reader.final_state``. ``frame`` holds at least
    product_id, _change_type and _commit_version; the result adds ``_row`` (the
    winning row's position in ``frame``) and ``_live`` (False for a final delete).
    """
    keep = frame["_change_type"].isin(STATE_CHANGES).to_numpy()
    frame = frame[keep].assign(_row=np.flatnonzero(keep), _live=lambda f: f["_change_type"] != DELETE)
    order = frame.sort_values(["product_id", "_commit_version", "_live", "_row"], kind="stable")
    return order.groupby("product_id").tail(1)


def _plain_types(table: pa.Table) -> pa.Table:
    """Cast the view types delta-rs may return (string_view, list_view) to the plain ones pyarrow kernels take."""
    fields = []
    for f in table.schema:
        t = f.type
        if pa.types.is_string_view(t) or pa.types.is_large_string(t):
            t = pa.string()
        elif pa.types.is_list_view(t) or pa.types.is_large_list(t) or pa.types.is_large_list_view(t):
            t = pa.list_(pa.float64())
        fields.append(pa.field(f.name, t, f.nullable))
    schema = pa.schema(fields)
    return table if schema == table.schema else table.cast(schema)


def _arrow_strings(meta: pd.DataFrame) -> pd.DataFrame:
    """Text columns as Arrow-backed strings: filter comparisons run in Arrow kernels (~10x faster at 1M rows)."""
    for col in meta.columns:
        if meta[col].dtype == object:
            meta[col] = meta[col].astype("string[pyarrow]")
    return meta


def _clean(row: dict) -> dict:
    """JSON-friendly values: NaN -> None, numpy scalars -> Python."""
    out = {}
    for key, value in row.items():
        if isinstance(value, float) and np.isnan(value):
            value = None
        elif isinstance(value, np.generic):
            value = value.item()
        elif value is pd.NA or value is pd.NaT:
            value = None
        out[key] = value
    return out
