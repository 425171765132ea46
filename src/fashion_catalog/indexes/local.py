"""The embedded local vector index: three indexes (image, text, hybrid) and a keyword index over the
multimodal table, answering queries from the current state of a :class:`TableFollower`.

The follower keeps the state in step with the Delta table (:mod:`fashion_catalog.indexes.follower`) and
the builder makes each state (:mod:`fashion_catalog.indexes.local_state`); this class only answers. Search
is exact cosine (vectors are unit length) and switches to a FAISS approximate index (IVF-Flat by default,
see :mod:`fashion_catalog.indexes.ann`) above ``approximate_threshold`` rows; filters in the Databricks
dialect are applied to the candidates before ranking (exactly when few rows match, inside the approximate
scan otherwise). Keyword search is BM25 over name and description (:mod:`fashion_catalog.indexes.keyword`),
fed the same snapshot and change feed as the vectors.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict
from dataclasses import asdict

import numpy as np
import pandas as pd

from fashion_catalog.indexes.ann import AnnParams
from fashion_catalog.indexes.brands import brand_counts
from fashion_catalog.indexes.filters import evaluate, parse_filters
from fashion_catalog.indexes.follower import SyncStatus, TableFollower
from fashion_catalog.indexes.local_state import StateBuilder
from fashion_catalog.indexes.store import IndexNotReadyError
from fashion_catalog.schemas import FILTER_COLUMNS, INDEX_KINDS, METADATA_COLUMNS

log = logging.getLogger(__name__)

__all__ = ["FILTER_COLUMNS", "INDEX_KINDS", "METADATA_COLUMNS", "IndexNotReadyError", "LocalIndexStore"]


MASKS_KEPT = 16  # filters whose admitted rows are kept (a few requests' worth)


class LocalIndexStore:
    """In-memory mirror of the multimodal table with one vector matrix per index kind (an IndexStore with LiveRows).

    Syncs go to the follower, which builds the next state beside the current one; queries read whichever
    state is current, so a slow rebuild never holds a shopper.
    """

    def __init__(self, table_path: str, dimension: int = 512, approximate_threshold: int = 100_000,
                 ann: AnnParams | None = None, exact_max_candidates: int = 20_000):
        self.dim = dimension
        # Filtered queries with at most this many matching rows are ranked exactly.
        self.exact_max_candidates = exact_max_candidates
        self.follower = TableFollower(table_path, StateBuilder(dimension, approximate_threshold, ann))
        # The rows each recent filter admits, per state: a fused search asks three or four retrievers with the same
        # filter, and a LIKE over 44k names costs tens of milliseconds.
        self._masks: OrderedDict[tuple, tuple[weakref.ref, np.ndarray]] = OrderedDict()
        self._masks_lock = threading.Lock()

    def _admitted(self, state, conditions) -> np.ndarray:
        """The rows of ``state`` the conditions admit (evaluated once per state and filter, recent ones kept)."""
        key = (id(state), repr(conditions))
        with self._masks_lock:
            cached = self._masks.get(key)
            if cached is not None and cached[0]() is state:  # not a new state that reuses a freed one's id
                self._masks.move_to_end(key)
                return cached[1]
        mask = evaluate(conditions, state.meta)
        mask.setflags(write=False)
        with self._masks_lock:
            self._masks[key] = (weakref.ref(state), mask)
            while len(self._masks) > MASKS_KEPT:
                self._masks.popitem(last=False)
        return mask

    @classmethod
    def from_arrays(cls, meta: pd.DataFrame, vectors: dict[str, np.ndarray], **kwargs) -> LocalIndexStore:
        """An index over in-memory rows (benchmarks; no table to follow). Missing kinds stay empty."""
        store = cls(table_path="<memory>", dimension=next(iter(vectors.values())).shape[1], **kwargs)
        store.follower.adopt(store.follower.builder.from_arrays(meta, vectors))
        return store

    @property
    def synced_version(self) -> int | None:
        """The table version the current state reflects (None before the first sync)."""
        return self.follower.state.version

    def sync(self) -> SyncStatus:
        """Bring the index up to the table's latest version (see :meth:`TableFollower.sync`)."""
        return self.follower.sync()

    def reload(self) -> SyncStatus:
        """Rebuild the index from the table's latest snapshot (searches go on against the current state)."""
        return self.follower.reload()

    def status(self) -> SyncStatus:
        return self.follower.status()

    def health(self) -> dict:
        """The sync status as the service reports it (see :mod:`fashion_catalog.indexes.store`)."""
        return dict(asdict(self.status()), backend="local", ready=self.synced_version is not None)

    def get(self, product_id: int) -> dict | None:
        state = self.follower.state
        slot = state.slot.get(int(product_id))
        return None if slot is None else _clean(state.meta.iloc[slot].to_dict())

    def live_rows(self, kind: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """A consistent copy of (metadata, vectors of ``kind``, has-live-vector mask), one row per slot."""
        state = self.follower.state
        return state.meta.reset_index(drop=True), state.vecs[kind].copy(), state.has[kind] & state.alive

    def distinct_values(self, column: str, limit: int = 200) -> list[str]:
        """The most frequent values of a metadata column among live rows, sorted."""
        state = self.follower.state
        values = state.meta[state.alive][column].dropna().astype(str).value_counts().index[:limit]
        return sorted(values)

    def brand_counts(self) -> dict[str, int]:
        """The brands of the live rows' display names (:func:`indexes.brands.brand_counts`)."""
        state = self.follower.state
        return brand_counts(state.meta[state.alive]["product_display_name"].tolist())

    def vector(self, product_id: int, kind: str) -> np.ndarray | None:
        state = self.follower.state
        slot = state.slot.get(int(product_id))
        if slot is None or not state.has[kind][slot]:
            return None
        return state.vecs[kind][slot].copy()

    def keyword_search(self, query: str, k: int = 10, filters: dict | None = None,
                       phrases: list[str] | tuple = ()) -> list[dict]:
        """Top-k rows by BM25 over name and description (``phrases``: synonym expansions), each with all
        metadata and ``score`` (BM25, higher is better); ``filters`` admit the ids the keyword search may return."""
        conditions = parse_filters(filters, FILTER_COLUMNS)
        state = self.follower.state
        if state.version is None:
            raise IndexNotReadyError("the index has not been synced yet")
        candidates = None
        if conditions:
            valid = state.alive & self._admitted(state, conditions)
            if not valid.any():
                return []
            candidates = state.meta["product_id"].to_numpy()[valid].tolist()
        slots, scores = [], []
        for pid, score in state.keyword.search(query, k, candidates, phrases):
            slot = state.slot.get(pid)
            if slot is not None and state.alive[slot]:  # a row a newer sync added is not this state's yet
                slots.append(slot)
                scores.append(score)
        rows = state.meta.iloc[slots].to_dict("records")
        return [dict(_clean(r), score=s) for r, s in zip(rows, scores, strict=True)]

    def search(self, kind: str, query: np.ndarray, k: int = 10, filters: dict | None = None,
               exact: bool | None = None) -> list[dict]:
        """Top-k rows of index ``kind`` by cosine to ``query``, each with all metadata and ``score``."""
        if kind not in INDEX_KINDS:
            raise ValueError(f"unknown index {kind!r}; one of {sorted(INDEX_KINDS)}")
        conditions = parse_filters(filters, FILTER_COLUMNS)
        state = self.follower.state
        if state.version is None:
            raise IndexNotReadyError("the index has not been synced yet")
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.dim:
            raise ValueError(f"query has {q.shape[0]} dimensions, the index {self.dim}")
        valid = state.alive & state.has[kind]
        if conditions:
            valid &= self._admitted(state, conditions)
        candidates = int(valid.sum())
        if candidates == 0:
            return []
        use_ann = kind in state.ann and not exact and (not conditions or candidates > self.exact_max_candidates)
        if use_ann:
            slots, scores = state.ann[kind].search(q, k, valid)
        else:
            idx = np.flatnonzero(valid)
            sims = state.vecs[kind][idx] @ q if conditions else (state.vecs[kind] @ q)[idx]
            top = np.argpartition(-sims, min(k, len(sims)) - 1)[:k] if len(sims) > k else np.arange(len(sims))
            top = top[np.argsort(-sims[top])]
            slots, scores = idx[top], sims[top]
        rows = state.meta.iloc[slots].to_dict("records")
        return [dict(_clean(r), score=float(s)) for r, s in zip(rows, scores, strict=True)]


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
