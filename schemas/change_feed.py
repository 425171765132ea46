"""The final-state rule for a Delta Change Data Feed: written here once, implemented twice.

A batch of CDF rows may hold several changes of one product (two updates, a delete
and a re-insert, an overwrite that deletes and re-inserts in one commit). Both the
embedder (Spark: :func:`streaming.reader.final_state`) and the search index
(pandas: :func:`search.local_index.final_changes`) reduce it to one state per
product with the same rule, and ``tests/test_index.py`` holds the two equal on
the same change feed:

1. ``update_preimage`` rows are dropped: they describe the past;
2. the row of the highest ``_commit_version`` wins;
3. inside one commit a surviving row (insert / update_postimage) wins over a delete.

Two surviving rows of one product in one commit cannot come from a MERGE or an
UPDATE; the Spark version breaks that tie by a hash of the row so it stays
deterministic, the pandas one by row order.
"""

from __future__ import annotations

# CDF change types that carry a row's new state; update_preimage is skipped.
STATE_CHANGES = ("insert", "update_postimage", "delete")
DELETE = "delete"
