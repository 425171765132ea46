"""The local index's state: one immutable view of the table's rows, and the builder of the next one.

:class:`IndexState` holds the metadata, one vector matrix per index kind, the keyword index and
the approximate indexes; readers take the current state and never wait. :class:`StateBuilder`
makes the next state from a snapshot of the table or from its Change Data Feed (the final-state
rule of :mod:`fashion_catalog.schemas.change_feed`), appending into growable buffers, compacting
dead slots and building the approximate indexes before the new state is swapped in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fashion_catalog.indexes.ann import AnnIndex, AnnParams
from fashion_catalog.indexes.keyword import KeywordIndex
from fashion_catalog.lakehouse.direct import plain_types
from fashion_catalog.schemas import INDEX_KINDS, KEYWORD_EXTRA_COLUMNS, METADATA_COLUMNS
from fashion_catalog.schemas.change_feed import final_changes

log = logging.getLogger(__name__)

# Compact when more than this share of the slots is dead (and the state has over 1,000 slots).
_MAX_DEAD_SHARE = 0.3


@dataclass(frozen=True)
class IndexState:
    """One immutable view of the index: readers take the current one and never wait for a sync.

    Vector matrices are views ``[:n]`` of growable buffers: a sync appends past ``n`` (invisible to
    older states) or builds new arrays, then swaps the whole state in one assignment.
    """

    meta: pd.DataFrame  # row i = slot i
    vecs: dict[str, np.ndarray]
    has: dict[str, np.ndarray]
    alive: np.ndarray
    slot: dict[int, int]
    ann: dict[str, AnnIndex]
    version: int | None = None
    table_id: str | None = None
    # Updated in place by a sync before the swap (rows are keyed by product id, and hits are resolved
    # through this state's slots, so a reader of an older state never sees a row it does not know).
    keyword: KeywordIndex = field(default_factory=KeywordIndex)

    @property
    def n(self) -> int:
        return len(self.alive)


def empty_state(dim: int) -> IndexState:
    return IndexState(pd.DataFrame(columns=METADATA_COLUMNS), {k: np.zeros((0, dim), np.float32) for k in INDEX_KINDS},
                  {k: np.zeros(0, bool) for k in INDEX_KINDS}, np.zeros(0, bool), {}, {})


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


class StateBuilder:
    """Builds the next :class:`IndexState` beside the current one (one builder per index; one build at a time)."""

    def __init__(self, dimension: int, approximate_threshold: int = 100_000, ann: AnnParams | None = None):
        self.dim = dimension
        self.approximate_threshold = approximate_threshold
        self.ann_params = ann or AnnParams()
        self._buffers: dict[str, np.ndarray] = {}

    def from_arrays(self, meta: pd.DataFrame, vectors: dict[str, np.ndarray]) -> IndexState:
        """A state over in-memory rows (benchmarks; no table to follow). Missing kinds stay empty."""
        n = len(meta)
        descriptions = meta["description"].tolist() if "description" in meta else [None] * n
        frame = arrow_strings(meta.reset_index(drop=True).reindex(columns=METADATA_COLUMNS))
        vecs = {k: np.ascontiguousarray(vectors[k], dtype=np.float32) if k in vectors else np.zeros((n, 0))
                for k in INDEX_KINDS}
        state = IndexState(frame, vecs, {k: np.full(n, k in vectors) for k in INDEX_KINDS}, np.ones(n, bool),
                           {int(pid): i for i, pid in enumerate(frame["product_id"].to_numpy())}, {}, version=0)
        state.keyword.upsert(zip(frame["product_id"].tolist(), frame["product_display_name"].tolist(), descriptions,
                                 strict=True), replace=False)
        if n >= self.approximate_threshold:
            state = replace(state, ann={k: AnnIndex(state.vecs[k], self.ann_params) for k in vectors})
        return state

    def snapshot(self, table_path: str, version: int, table_id: str) -> IndexState:
        """The state of the table at ``version``, read whole (DataFusion applies its deletion vectors)."""
        from deltalake import DeltaTable, QueryBuilder

        snap = DeltaTable(table_path, version=version)
        cols = ", ".join(f"`{c}`" for c in columns({f.name for f in snap.schema().fields}))
        # QueryBuilder (DataFusion) reads deletion vectors, which the pyarrow dataset path does not.
        data = plain_types(pa.table(QueryBuilder().register("t", snap).execute(f"SELECT {cols} FROM t").read_all()))
        self._buffers = {}
        state = replace(self._append(empty_state(self.dim), data, fresh=True), version=version, table_id=table_id)
        log.info("local index loaded %d rows at version %d", data.num_rows, version)
        return state

    def apply_changes(self, state: IndexState, table, start: int, end: int) -> tuple[IndexState, int]:
        """``state`` moved to version ``end`` by the change feed of ``table`` (a DeltaTable) from ``start``;
        returns it with the number of products the feed changed."""
        changes = plain_types(pa.table(table.load_cdf(starting_version=start, ending_version=end).read_all()))
        final = final_changes(changes)
        changed = final["product_id"].to_pylist()
        alive, slots = state.alive.copy(), dict(state.slot)
        for pid in changed:
            slot = slots.pop(int(pid), None)
            if slot is not None:
                alive[slot] = False
        state = replace(state, alive=alive, slot=slots, version=end)
        # Deleted products leave the keyword index now; changed ones are replaced in one step by the upsert
        # below (a search in between still finds their old text, never nothing).
        state.keyword.delete(final.filter(pc.invert(final["_live"]))["product_id"].to_pylist())
        upserts = final.filter(final["_live"])["_row"]
        if len(upserts):
            state = self._append(state, changes.take(upserts).select(columns(set(changes.column_names))))
        # Too many dead slots: compact (and rebuild any approximate index).
        if state.n > 1000 and (~state.alive).sum() > _MAX_DEAD_SHARE * state.n:
            state = self._compact(state)
        return state, len(final)

    def _grow(self, kind: str, current: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``current`` followed by ``rows``, written past the end of the shared buffer when it has room."""
        n, m = len(current), len(rows)
        buf = self._buffers.get(kind)
        if buf is None or buf.shape[0] < n + m or current.base is not buf:
            buf = np.zeros((max(2 * (n + m), 1024), self.dim), np.float32)
            buf[:n] = current
            self._buffers[kind] = buf
        buf[n:n + m] = rows
        return buf[:n + m]

    def _append(self, state: IndexState, data: pa.Table, fresh: bool = False) -> IndexState:
        start = state.n
        meta = arrow_strings(data.select(METADATA_COLUMNS).to_pandas())
        names = data.column("product_display_name").to_pylist()
        descriptions = data.column("description").to_pylist() if "description" in data.column_names \
            else [None] * data.num_rows
        state.keyword.upsert(zip(meta["product_id"].tolist(), names, descriptions, strict=True), replace=not fresh)
        meta.index = range(start, start + len(meta))
        vecs, has, ann = dict(state.vecs), dict(state.has), dict(state.ann)
        for kind, col in INDEX_KINDS.items():
            rows, present = _vectors(data.column(col), self.dim)
            vecs[kind] = self._grow(kind, state.vecs[kind], rows)
            has[kind] = np.concatenate([state.has[kind], present])
            if kind in ann and ann[kind].size == start:
                ann[kind].add(rows)  # ids stay equal to slots; older states never select them
            else:
                ann.pop(kind, None)  # out of step with the slots (an earlier sync failed): rebuilt before the swap
        slots = dict(state.slot)
        for offset, pid in enumerate(meta["product_id"].to_numpy()):
            slots[int(pid)] = start + offset
        frame = pd.concat([state.meta, meta]) if len(state.meta) else meta
        return replace(state, meta=frame, vecs=vecs, has=has, slot=slots, ann=ann,
                       alive=np.concatenate([state.alive, np.ones(len(meta), bool)]))

    def _compact(self, state: IndexState) -> IndexState:
        keep = np.flatnonzero(state.alive)
        meta = state.meta.iloc[keep].reset_index(drop=True)
        self._buffers = {}
        return replace(state, meta=meta, vecs={k: state.vecs[k][keep] for k in INDEX_KINDS},
                       has={k: state.has[k][keep] for k in INDEX_KINDS}, alive=np.ones(len(keep), bool),
                       slot={int(pid): i for i, pid in enumerate(meta["product_id"].to_numpy())}, ann={})

    def with_ann(self, state: IndexState) -> IndexState:
        """The state with approximate indexes above the threshold (built before the swap, off the readers)."""
        if int(state.alive.sum()) < self.approximate_threshold:
            return replace(state, ann={}) if state.ann else state
        ann = dict(state.ann)
        for kind in INDEX_KINDS:
            if kind not in ann or ann[kind].stale:
                ann[kind] = AnnIndex(state.vecs[kind], self.ann_params)
        return replace(state, ann=ann)

def columns(available: set[str]) -> list[str]:
    """The columns the index reads: metadata, vectors, and the keyword columns the table has (a table
    written before descriptions were kept is indexed by name only)."""
    return METADATA_COLUMNS + list(INDEX_KINDS.values()) + [c for c in KEYWORD_EXTRA_COLUMNS if c in available]


def arrow_strings(meta: pd.DataFrame) -> pd.DataFrame:
    """Text columns as Arrow-backed strings: filter comparisons run in Arrow kernels (~10x faster at 1M rows)."""
    for col in meta.columns:
        if meta[col].dtype == object:
            meta[col] = meta[col].astype("string[pyarrow]")
    return meta

