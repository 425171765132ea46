"""The final-state rule for a Delta Change Data Feed: written here once, implemented twice.

A batch of CDF rows may hold several changes of one product (two updates, a delete
and a re-insert, an overwrite that deletes and re-inserts in one commit). Both the
embedder (Spark: :func:`streaming.reader.final_state`; its tiny batches and the
search index: pandas, :func:`final_changes` below) reduce it to one state per
product with the same rule, and ``tests/test_index.py`` holds the two equal on
the same change feed:

1. ``update_preimage`` rows are dropped: they describe the past;
2. the row of the highest ``_commit_version`` wins;
3. inside one commit a surviving row (insert / update_postimage) wins over a delete.

Two surviving rows of one product in one commit cannot come from a MERGE or an
UPDATE; the Spark version breaks that tie by a hash of the row so it stays
deterministic, the pandas one by row order (the embedder's tiny batches hand such
a batch to the Spark version, so a replay picks the same row).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# CDF change types that carry a row's new state; update_preimage is skipped.
STATE_CHANGES = ("insert", "update_postimage", "delete")
DELETE = "delete"


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


def has_tied_survivors(frame: pd.DataFrame) -> bool:
    """Whether one commit holds two surviving rows of one product (where the two rules' tie-breaks differ)."""
    alive = frame[frame["_change_type"].isin([c for c in STATE_CHANGES if c != DELETE])]
    return bool(alive.duplicated(["product_id", "_commit_version"]).any())
