"""The shoppers the service recommends for: the user_style_features table, or the personas computed from the index."""

from __future__ import annotations

import logging
import os

from fashion_catalog.indexes.store import LiveRows
from fashion_catalog.personalization.personas import compute_user_features, load_personas

log = logging.getLogger(__name__)


def read_user_features(table_path: str | None) -> dict[str, dict] | None:
    """Rows of a path-based user_style_features Delta table by user_id (None when there is no such table)."""
    if table_path is None or not os.path.isdir(os.path.join(table_path, "_delta_log")):
        return None
    import pyarrow as pa
    from deltalake import DeltaTable, QueryBuilder

    table = pa.table(QueryBuilder().register("u", DeltaTable(table_path)).execute("SELECT * FROM u").read_all())
    return {r["user_id"]: r for r in table.to_pylist()}


def users_from_warehouse(warehouse, table_name: str) -> dict[str, dict] | None:
    """Rows of the Unity Catalog user_style_features table through a SQL warehouse (None when it fails)."""
    try:
        rows = warehouse.query(f"SELECT * FROM {table_name}")
    except Exception as exc:  # noqa: BLE001 - the service runs on without recommendations
        log.warning("cannot read %s: %s", table_name, exc)
        return None
    return {r["user_id"]: r for r in rows}


def users_from_index(store) -> dict[str, dict]:
    """Persona features computed from the index's hybrid vectors (when the table is absent; local index only)."""
    if not isinstance(store, LiveRows):
        return {}
    meta, hybrid, has = store.live_rows("hybrid")
    frame = compute_user_features(load_personas(), meta, hybrid, has)
    return {r["user_id"]: r for r in frame.to_dict("records")}


class UserDirectory:
    """The current users; reloaded when the index moves (their features depend on it).

    Read from the user_style_features table (a local Delta path, or a Unity Catalog table
    through a SQL warehouse), else computed from the local index.
    """

    def __init__(self, table_path: str | None = None, warehouse=None, table_name: str | None = None):
        self.table_path = table_path
        self.warehouse, self.table_name = warehouse, table_name
        self.users: dict[str, dict] = {}

    def reload(self, store) -> None:
        from_table = (users_from_warehouse(self.warehouse, self.table_name) if self.warehouse and self.table_name
                      else read_user_features(self.table_path))
        self.users = from_table or users_from_index(store)

    def get(self, user_id: str) -> dict | None:
        return self.users.get(user_id)

    def __len__(self) -> int:
        return len(self.users)

    def public(self) -> list[dict]:
        """Every user without the embedding (for listings)."""
        return [{k: v for k, v in u.items() if k != "user_embedding"} for u in self.users.values()]
