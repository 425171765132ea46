"""The final-state rule for a Delta Change Data Feed: written here once, implemented twice.

A batch of CDF rows may hold several changes of one product (two updates, a delete
and a re-insert, an overwrite that deletes and re-inserts in one commit). Every
reader reduces it to one state per product with the same rule:

1. ``update_preimage`` rows are dropped: they describe the past;
2. the row of the highest ``_commit_version`` wins;
3. inside one commit a surviving row (insert / update_postimage) wins over a delete;
4. two surviving rows of one product in one commit (duplicate ids in an append: a MERGE or
   an UPDATE cannot make them) are ordered by the product columns, in :data:`TIE_COLUMNS`
   order, and the greatest wins. Values compare as Spark sorts them ``ASC NULLS LAST``:
   numbers by value with NaN above every number, strings by their UTF-8 bytes, null above
   everything. Only rows equal in every product column stay tied (``-0.0`` equals ``0.0``),
   and then either pick gives the same state.

The Arrow implementation is :func:`final_states` / :func:`final_changes` below (a tiny stream
batch, the search index following the embeddings table); the Spark one is
``fashion_catalog.streaming.reader.final_state`` (a large stream batch). Rule 4 makes them pick
the same row in every case, so a replay of a batch picks the same state whichever engine
runs it; ``tests/test_index.py`` holds the two equal on one change feed, ties included.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fashion_catalog.schemas.tables import PRODUCT_COLUMNS

# CDF change types that carry a row's new state; update_preimage is skipped.
STATE_CHANGES = ("insert", "update_postimage", "delete")
DELETE = "delete"
# Rule 4's order: every product column but the key (equal within a product anyway).
TIE_COLUMNS: tuple[str, ...] = tuple(c for c in PRODUCT_COLUMNS if c != "product_id")


def final_changes(changes: pa.Table) -> pa.Table:
    """One row per product_id: where its final state is in ``changes`` (the rule of this module).

    ``changes`` holds at least product_id, _change_type and _commit_version, plus whichever
    :data:`TIE_COLUMNS` it has (rule 4 uses those). Returns product_id, ``_row`` (the winning
    row's position in ``changes``), ``_live`` (False for a final delete) and _commit_version.
    """
    keep = pc.is_in(changes["_change_type"], pa.array(STATE_CHANGES)).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(keep)
    kept = changes.take(pa.array(rows, pa.int64()))
    live = pc.not_equal(kept["_change_type"], DELETE)
    ties = [c for c in TIE_COLUMNS if c in changes.column_names]
    keyed = pa.table({"product_id": kept["product_id"], "_commit_version": kept["_commit_version"], "_live": live,
                      **{c: kept[c] for c in ties}})
    # Ascending with nulls last, as Spark's ASC NULLS LAST (NaN above numbers, strings by bytes): the
    # last row of each product is the greatest, which streaming.reader.final_state ranks first.
    order = pc.sort_indices(keyed, sort_keys=[(c, "ascending") for c in keyed.column_names],
                            null_placement="at_end").to_numpy()
    ids = keyed["product_id"].to_numpy(zero_copy_only=False)[order]
    last = order[np.append(ids[1:] != ids[:-1], True)] if len(order) else order
    picked = pa.array(last, pa.int64())
    return pa.table({"product_id": keyed["product_id"].take(picked), "_row": pa.array(rows[last], pa.int64()),
                     "_live": live.take(picked), "_commit_version": keyed["_commit_version"].take(picked)})


def final_states(changes: pa.Table) -> pa.Table:
    """The final product states of a batch of CDF rows (Arrow; the twin of ``streaming.reader.final_state``).

    ``changes`` holds the product columns and the CDF columns. Returns the product columns plus
    ``_deleted`` and ``source_commit_version`` (int64), one row per product.
    """
    final = final_changes(changes)
    rows = changes.take(final["_row"]).select(PRODUCT_COLUMNS)
    rows = rows.append_column("_deleted", pc.invert(final["_live"]))
    return rows.append_column("source_commit_version", final["_commit_version"].cast(pa.int64()))
