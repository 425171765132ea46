"""Load a Kaggle-layout catalog into the products Delta table (upsert by product_id).

Unparseable lines go to the quarantine table with their reason; everything else
lands. Only rows that differ from the stored ones are rewritten, so reloading the
same file produces no Change Data Feed churn (and no re-embedding).
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime

from pyspark.sql import SparkSession

from fashion_catalog.catalog.parser import ParsedCatalog, parse_styles_csv
from fashion_catalog.conf import Config
from fashion_catalog.lakehouse.tables import ensure_all_tables, merge_into, write_table
from fashion_catalog.schemas import PRODUCT_COLUMNS
from fashion_catalog.schemas.spark import PRODUCTS_SCHEMA, QUARANTINE_SCHEMA

log = logging.getLogger(__name__)

MAX_PROTECTED_IDS = 10_000


def load_catalog(spark: SparkSession, config: Config, source_dir: str | None = None,
                 delete_missing: bool = False) -> dict[str, int]:
    """Parse ``<source_dir>/styles.csv`` and upsert it into products; returns counts."""
    source_dir = source_dir or config.catalog_source_dir
    styles = os.path.join(source_dir, "styles.csv")
    if not os.path.isfile(styles):
        raise FileNotFoundError(f"no styles.csv in {source_dir}: expected the Kaggle layout styles.csv + images/")
    parsed: ParsedCatalog = parse_styles_csv(styles, os.path.join(source_dir, "images"), config.image_root)
    ensure_all_tables(spark, config)
    rows = [tuple(r[c] for c in PRODUCT_COLUMNS) for r in parsed.rows]
    source = spark.createDataFrame(rows, PRODUCTS_SCHEMA)
    changed = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in PRODUCT_COLUMNS if c != "product_id")
    statement = (f"ON t.product_id = s.product_id WHEN MATCHED AND ({changed}) THEN UPDATE SET * "
                 "WHEN NOT MATCHED THEN INSERT *")
    if delete_missing:
        # A product whose line was quarantined in this file is not missing: its line is broken. Keep it.
        keep = sorted(parsed.quarantined_ids)
        if len(keep) > MAX_PROTECTED_IDS:
            raise ValueError(f"{len(keep)} quarantined lines: too many to delete missing products safely; "
                             "fix the file (see the quarantine table) or load without --delete-missing")
        guard = f" AND t.product_id NOT IN ({', '.join(map(str, keep))})" if keep else ""
        statement += f" WHEN NOT MATCHED BY SOURCE{guard} THEN DELETE"
    result = merge_into(spark, config.tables.products, source, statement)
    if parsed.quarantined:
        now = datetime.now(UTC)
        q = spark.createDataFrame(
            [(styles, n, raw, reason, now) for n, raw, reason in parsed.quarantined], QUARANTINE_SCHEMA
        )
        write_table(q, config.tables.quarantine)
        for n, _raw, reason in parsed.quarantined[:20]:
            log.warning("quarantined %s:%d: %s", styles, n, reason)
    counts = {
        "parsed": len(parsed.rows),
        "quarantined": len(parsed.quarantined),
        **result,
    }
    log.info("catalog %s loaded into %s: %s", styles, config.tables.products, counts)
    return counts
