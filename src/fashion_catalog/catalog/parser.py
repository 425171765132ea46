"""Parse a Kaggle-layout fashion catalog (styles.csv + images/<id>.jpg) into product rows.

The original styles.csv is dirty: some display names contain unquoted commas.
The display name is the last column, so each record is split into the first nine
fields (CSV quoting honoured: a quoted field may hold commas, quotes and newlines)
and "everything after the ninth comma" -- no row is lost or mangled. Only records
that really cannot be read (bytes that are not UTF-8, too few fields, an id or
year that is not a number or out of INT range, a duplicate id) are quarantined,
each with its reason; nothing aborts a load.
"""

from __future__ import annotations

import csv
import io
import math
import os
import zlib
from dataclasses import dataclass, field

from fashion_catalog.conf import ActionableError

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


class CatalogFormatError(ActionableError, ValueError):
    """The catalog file as a whole is unusable (e.g. wrong header)."""


@dataclass
class ParsedCatalog:
    rows: list[dict] = field(default_factory=list)
    quarantined: list[tuple[int, str, str]] = field(default_factory=list)  # (line number, raw line, reason)
    quarantined_ids: set[int] = field(default_factory=set)  # ids read from quarantined lines


def derive_price(product_id: int, master_category: str | None) -> float:
    """Deterministic price for a product (see PRICE_BANDS)."""
    low, high = PRICE_BANDS.get(master_category or "", DEFAULT_PRICE_BAND)
    u = zlib.crc32(str(product_id).encode()) / 2**32
    price = low + (high - low) * u**1.5
    return round(max(math.floor(price), 0) + 0.99, 2)


def _none_if_empty(value: str) -> str | None:
    value = value.strip()
    return value or None


INT_MIN, INT_MAX = -(2**31), 2**31 - 1  # the products table's INT columns
MAX_RECORD_LINES = 20  # a quoted field may span lines; one that never closes stops here


class _Unterminated(ValueError):
    """A quoted field runs past the end of the physical line (it may continue on the next)."""


def _unquote_name(raw: str) -> str:
    """Undo CSV quoting when the name field itself was quoted; otherwise keep it verbatim."""
    if len(raw) >= 2 and raw.startswith('"') and raw.endswith('"'):
        try:
            return next(csv.reader(io.StringIO(raw)))[0]
        except (csv.Error, StopIteration, IndexError):
            return raw
    return raw


def _quoted(record: str, start: int) -> tuple[str, int]:
    """The CSV-quoted field starting at ``record[start] == '"'``: its text and the index after its closing quote."""
    parts, i = [], start + 1
    while True:
        k = record.find('"', i)
        if k < 0:
            raise _Unterminated("unterminated quoted field")
        parts.append(record[i:k])
        if record.startswith('"', k + 1):  # "" is a literal quote
            parts.append('"')
            i = k + 2
            continue
        return "".join(parts), k + 1


def split_record(record: str, n: int = len(KAGGLE_COLUMNS) - 1) -> tuple[list[str], str | None]:
    """The first ``n`` fields (CSV quoting undone) and the raw text after the n-th separator.

    Only a field that *starts* with a quote is quoted (``3.5" Short`` keeps its quote); the
    display name is the raw rest of the record, so unquoted commas in it stay. Raises
    :class:`_Unterminated` when a quoted field does not close on this record.
    """
    fields: list[str] = []
    i = 0
    while len(fields) < n:
        if record.startswith('"', i):
            text, j = _quoted(record, i)
            k = record.find(",", j)
            text += record[j:] if k < 0 else record[j:k]  # anything after the closing quote, as written
            j = len(record) if k < 0 else k
        else:
            k = record.find(",", i)
            j = len(record) if k < 0 else k
            text = record[i:j]
        fields.append(text)
        if j >= len(record):
            return fields, None
        i = j + 1
    rest = record[i:]
    if rest.startswith('"'):
        _quoted(rest, 0)  # a quoted name that does not close continues on the next line
    return fields, rest


def _int_field(name: str, text: str, *, allow_float: bool = False) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text) if allow_float else int(text)
    except ValueError:
        kind = "a number" if allow_float else "an integer"
        raise ValueError(f"{name} {text!r} is not {kind}") from None
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{name} {text!r} is not a finite number")
        value = int(value)
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError(f"{name} {text!r} is out of range for an INT column")
    return value


def parse_line(line: str) -> dict:
    """Parse one record into a products row; raises ValueError with the reason."""
    fields, rest = split_record(line)
    if rest is None:
        raise ValueError(f"expected {len(KAGGLE_COLUMNS)} fields, found {len(fields)}")
    raw = dict(zip(KAGGLE_COLUMNS, [*fields, rest], strict=True))
    product_id = _int_field("id", raw["id"])
    if product_id is None:
        raise ValueError("id is empty")
    year = _int_field("year", raw["year"], allow_float=True)
    text_columns = [k for k in KAGGLE_COLUMNS if k not in ("id", "year", "productDisplayName")]
    row = {COLUMN_MAP[k]: _none_if_empty(raw[k]) for k in text_columns}
    name = _unquote_name(raw["productDisplayName"].rstrip("\r\n"))
    row.update(product_id=product_id, year=year, product_display_name=name if name.strip() else None)
    row["price"] = derive_price(product_id, row["master_category"])
    return row


def _records(data: bytes):
    """(first line number, text or None, error) per record; a record may span lines inside quotes."""
    lines = data.split(b"\n")
    number = 1
    while number < len(lines):
        raw = lines[number]
        start = number + 1
        number += 1
        try:
            text = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            yield start, raw.decode("utf-8", errors="replace").rstrip("\r"), (
                f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")
            continue
        joined = 1
        while True:
            try:
                split_record(text)
                break
            except _Unterminated:
                if joined >= MAX_RECORD_LINES or number >= len(lines):
                    break  # parse_line reports it
                try:
                    text += "\n" + lines[number].decode("utf-8").rstrip("\r")
                except UnicodeDecodeError:
                    break
                number += 1
                joined += 1
        yield start, text, None


def parse_styles_csv(styles_path: str | os.PathLike[str], images_dir: str | None = None,
                     image_root: str | None = None) -> ParsedCatalog:
    """Read a styles.csv; rows get ``image_path`` = <images_dir>/<id>.jpg, relative to ``image_root`` when the
    images lie under it (so the data folder can be moved: images.base_dir), else absolute.

    Every record becomes a row or a quarantined line with its reason (bad bytes, bad numbers,
    too few fields, a duplicate id); nothing aborts the load. A quarantined line whose id
    could be read still names its product in ``quarantined_ids`` (so ``--delete-missing``
    keeps it).
    """
    styles_path = os.fspath(styles_path)
    images_dir = os.path.abspath(images_dir or os.path.join(os.path.dirname(styles_path), "images"))
    prefix = images_dir + os.sep
    if image_root is not None:
        relative = os.path.relpath(images_dir, os.path.abspath(image_root))
        if relative != os.pardir and not relative.startswith(os.pardir + os.sep):
            prefix = "" if relative == os.curdir else relative.replace(os.sep, "/") + "/"
    out = ParsedCatalog()
    first_line: dict[int, int] = {}
    with open(styles_path, "rb") as fh:
        data = fh.read()
    header = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").strip("\ufeff\r\n")
    if [h.strip() for h in header.split(",")] != KAGGLE_COLUMNS:
        raise CatalogFormatError(f"{styles_path}: header must be {','.join(KAGGLE_COLUMNS)}, found {header!r}")
    for number, text, error in _records(data):
        if not text.strip():
            continue
        if error is None:
            try:
                row = parse_line(text)
            except ValueError as exc:
                error = str(exc)
        if error is not None:
            out.quarantined.append((number, text, error))
            head = text.split(",", 1)[0].strip()
            if head.isdigit() and INT_MIN <= int(head) <= INT_MAX:
                out.quarantined_ids.add(int(head))
            continue
        pid = row["product_id"]
        if pid in first_line:
            out.quarantined.append((number, text, f"duplicate product_id {pid} (first at line {first_line[pid]})"))
            continue
        first_line[pid] = number
        row["image_path"] = f"{prefix}{pid}.jpg"
        out.rows.append(row)
    return out
