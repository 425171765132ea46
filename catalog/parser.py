"""Parse a Kaggle-layout fashion catalog (styles.csv + images/<id>.jpg) into product rows.

The original styles.csv is dirty: some display names contain unquoted commas.
The display name is the last column, so each line is split into the first nine
fields and "everything after the ninth comma" -- no row is lost or mangled.
Only lines that really cannot be read (too few fields, non-numeric id,
unreadable year, duplicate id) are quarantined, each with its reason.
"""

from __future__ import annotations

import csv
import io
import math
import os
import zlib
from dataclasses import dataclass, field

KAGGLE_COLUMNS = [
    "id", "gender", "masterCategory", "subCategory", "articleType", "baseColour",
    "season", "year", "usage", "productDisplayName",
]
# Kaggle column -> products schema column.
COLUMN_MAP = {
    "id": "product_id",
    "gender": "gender",
    "masterCategory": "master_category",
    "subCategory": "sub_category",
    "articleType": "article_type",
    "baseColour": "base_color",
    "season": "season",
    "year": "year",
    "usage": "usage",
    "productDisplayName": "product_display_name",
}

# The dataset has no price. A deterministic one is derived per product: a band per
# master category and a position in the band from crc32(product_id), skewed to the
# cheap end, ending in .99. Same id -> same price, on every machine, every run.
PRICE_BANDS: dict[str, tuple[float, float]] = {
    "Apparel": (12.0, 150.0),
    "Footwear": (25.0, 220.0),
    "Accessories": (8.0, 260.0),
    "Personal Care": (5.0, 90.0),
    "Free Items": (1.0, 10.0),
    "Sporting Goods": (15.0, 200.0),
    "Home": (10.0, 80.0),
}
DEFAULT_PRICE_BAND = (10.0, 150.0)


class CatalogFormatError(ValueError):
    """The catalog file as a whole is unusable (e.g. wrong header)."""


@dataclass
class ParsedCatalog:
    rows: list[dict] = field(default_factory=list)
    quarantined: list[tuple[int, str, str]] = field(default_factory=list)  # (line number, raw line, reason)


def derive_price(product_id: int, master_category: str | None) -> float:
    """Deterministic price for a product (see PRICE_BANDS)."""
    low, high = PRICE_BANDS.get(master_category or "", DEFAULT_PRICE_BAND)
    u = zlib.crc32(str(product_id).encode()) / 2**32
    price = low + (high - low) * u**1.5
    return round(max(math.floor(price), 0) + 0.99, 2)


def _none_if_empty(value: str) -> str | None:
    value = value.strip()
    return value or None


def _unquote_name(raw: str) -> str:
    """Undo CSV quoting when the name field itself was quoted; otherwise keep it verbatim."""
    if len(raw) >= 2 and raw.startswith('"') and raw.endswith('"'):
        try:
            return next(csv.reader(io.StringIO(raw)))[0]
        except (csv.Error, StopIteration, IndexError):
            return raw
    return raw


def parse_line(line: str) -> dict:
    """Parse one data line into a products row; raises ValueError with the reason."""
    parts = line.split(",", len(KAGGLE_COLUMNS) - 1)
    if len(parts) < len(KAGGLE_COLUMNS):
        raise ValueError(f"expected {len(KAGGLE_COLUMNS)} fields, found {len(parts)}")
    raw = dict(zip(KAGGLE_COLUMNS, parts, strict=True))
    try:
        product_id = int(raw["id"].strip())
    except ValueError:
        raise ValueError(f"id {raw['id']!r} is not an integer") from None
    year_text = raw["year"].strip()
    try:
        year = int(float(year_text)) if year_text else None
    except ValueError:
        raise ValueError(f"year {year_text!r} is not a number") from None
    text_columns = [k for k in KAGGLE_COLUMNS if k not in ("id", "year", "productDisplayName")]
    row = {COLUMN_MAP[k]: _none_if_empty(raw[k]) for k in text_columns}
    name = _unquote_name(raw["productDisplayName"].rstrip("\r\n"))
    row.update(product_id=product_id, year=year, product_display_name=name if name.strip() else None)
    row["price"] = derive_price(product_id, row["master_category"])
    return row


def parse_styles_csv(styles_path: str | os.PathLike[str], images_dir: str | None = None) -> ParsedCatalog:
    """Read a styles.csv; rows get ``image_path`` = <images_dir>/<id>.jpg (absolute)."""
    styles_path = os.fspath(styles_path)
    images_dir = os.path.abspath(images_dir or os.path.join(os.path.dirname(styles_path), "images"))
    out = ParsedCatalog()
    first_line: dict[int, int] = {}
    with open(styles_path, encoding="utf-8", newline="") as fh:
        header = fh.readline().strip("\ufeff\r\n")
        if [h.strip() for h in header.split(",")] != KAGGLE_COLUMNS:
            raise CatalogFormatError(
                f"{styles_path}: header must be {','.join(KAGGLE_COLUMNS)}, found {header!r}"
            )
        for number, line in enumerate(fh, start=2):
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            try:
                row = parse_line(text)
            except ValueError as exc:
                out.quarantined.append((number, text, str(exc)))
                continue
            pid = row["product_id"]
            if pid in first_line:
                out.quarantined.append((number, text, f"duplicate product_id {pid} (first at line {first_line[pid]})"))
                continue
            first_line[pid] = number
            row["image_path"] = os.path.join(images_dir, f"{pid}.jpg")
            out.rows.append(row)
    return out
