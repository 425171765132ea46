"""How far the embedder stream has read the products table, from its checkpoint and the table's log (no Spark).

For ``/health``: a stream that stopped (a crash loop, a paused job) leaves the products table moving
ahead while the embeddings stand still. The stream's last committed micro-batch
(``<checkpoint>/commits/<n>``) has its Delta source offset in ``<checkpoint>/offsets/<n>``: the last
position read, ``reservoirVersion`` and a file ``index`` in it, where index -1 means none of that version
yet. So the first version not read is ``reservoirVersion`` (index -1) or the one after it (the version,
an initial snapshot included, was read in that batch), and the stream is ``latest - that + 1`` behind.
Local checkpoints and tables only (a workspace's stream is watched through its job and its indexes' sync
state).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class StreamProgress:
    products_version: int
    next_version: int | None  # the first products version the stream has not wholly read (None: no batch yet)
    seconds_since_batch: float | None

    @property
    def behind_versions(self) -> int | None:
        if self.next_version is None:
            return None
        return max(0, self.products_version - self.next_version + 1)


def _last_committed_batch(checkpoint: str) -> int | None:
    try:
        names = os.listdir(os.path.join(checkpoint, "commits"))
    except OSError:
        return None
    batches = [int(n) for n in names if n.isdigit()]
    return max(batches) if batches else None


def stream_progress(products_path: str, checkpoint: str) -> StreamProgress | None:
    """The stream's progress on the products table at ``products_path``; None when either is not local or absent."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    if "://" in products_path or "://" in checkpoint or not os.path.isdir(products_path):
        return None
    try:
        latest = DeltaTable(products_path).version()
    except TableNotFoundError:
        return None
    batch = _last_committed_batch(checkpoint)
    if batch is None:
        return StreamProgress(latest, None, None)
    try:
        with open(os.path.join(checkpoint, "offsets", str(batch)), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
        offset = json.loads(lines[2])
        age = time.time() - os.path.getmtime(os.path.join(checkpoint, "commits", str(batch)))
    except (OSError, IndexError, ValueError):
        return StreamProgress(latest, None, None)
    version = int(offset["reservoirVersion"])
    return StreamProgress(latest, version if int(offset.get("index", -1)) == -1 else version + 1, round(age, 1))
