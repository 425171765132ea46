"""Databricks Vector Search filter dialect, parsed and validated, evaluated locally on pandas.

Keys encode column and operator: ``{"col": v}`` (equality; a list means IN),
``{"col NOT": v}``, ``{"col <": n}``, ``{"col <=": n}``, ``{"col >": n}``,
``{"col >=": n}``, ``{"col LIKE": "token"}`` (token match, case-insensitive;
``%``/``_`` wildcards when present) and ``{"col1 OR col2": [v1, v2]}``. Keys are
ANDed. A key that does not match this grammar exactly (``"price <= "`` with its
trailing space, an unknown operator, an unknown column) raises
:class:`FilterError` naming the key: nothing is ignored silently. Values are
data, never code: they are compared, not interpolated anywhere.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from numbers import Number

import numpy as np
import pandas as pd

OPERATORS = ("NOT", "<", "<=", ">", ">=", "LIKE")
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_KEY_RE = re.compile(rf"^(?P<col>{_NAME})(?: (?P<op>NOT|<=|>=|<|>|LIKE))?$")
_OR_RE = re.compile(rf"^{_NAME}(?: OR {_NAME})+$")


class FilterError(ValueError):
    """A filter key or value is invalid; the message names the key."""


@dataclass(frozen=True)
class Condition:
    columns: tuple[str, ...]  # several for an OR key
    op: str  # "=", "NOT", "<", "<=", ">", ">=", "LIKE", "OR"
    value: object


@dataclass(frozen=True)
class Filters:
    """Filters validated once per request: the request's object and its conditions. Every store takes it
    wherever it takes a filter dict, and does not parse it again (a fused search asks four retrievers)."""

    raw: dict
    conditions: tuple[Condition, ...]


def validated(filters: dict | Filters | None, columns: dict[str, str]) -> Filters | None:
    """``filters`` parsed and checked (see :func:`parse_filters`), or None for no filters."""
    if filters is None or isinstance(filters, Filters):
        return filters
    return Filters(filters, tuple(parse_filters(filters, columns)))


def raw_filters(filters: dict | Filters | None) -> dict | None:
    """The filter object as the request sent it (what a remote index is given)."""
    return filters.raw if isinstance(filters, Filters) else filters


MAX_LIKE_PATTERN = 200  # characters; a LIKE runs in linear time, and its pattern is bounded too
MAX_FILTER_VALUES = 1000  # values of one IN list: a bigger one is refused before any value is looked at
NUMBER_BOUND = 2**53  # past it JSON numbers lose integer precision (and could overflow): refused, not compared


def _check_scalar(key: str, value, column: str | None = None, kind: str | None = None) -> None:
    """A filter value must be a scalar of the column's type (or null): "50" never silently matches nothing."""
    if value is not None and not isinstance(value, (str, bool, Number)):
        raise FilterError(f"filter {key!r}: value {value!r} must be a string, number or boolean")
    if value is None or kind is None:
        return
    is_number = isinstance(value, Number) and not isinstance(value, bool)
    if kind == "number" and not is_number:
        raise FilterError(f"filter {key!r}: {column} is a number column; {value!r} is not a number")
    if kind == "string" and not isinstance(value, str):
        raise FilterError(f"filter {key!r}: {column} is a text column; {value!r} is not a string")
    if is_number:
        _check_range(key, value)


def _check_range(key: str, value: Number) -> None:
    if not (abs(value) <= NUMBER_BOUND and math.isfinite(float(value))):
        raise FilterError(f"filter {key!r}: {value!r} is not a finite number within ±{NUMBER_BOUND}")


def parse_filters(filters: dict | None, columns: dict[str, str]) -> list[Condition]:
    """Validate a filter dict against ``columns`` (name -> "string" | "number") and return conditions."""
    if filters is None:
        return []
    if isinstance(filters, Filters):
        return list(filters.conditions)
    if not isinstance(filters, dict):
        raise FilterError(f"filters must be an object of 'column [op]': value, got {type(filters).__name__}")
    out: list[Condition] = []
    for key, value in filters.items():
        if not isinstance(key, str):
            raise FilterError(f"filter key {key!r} must be a string")
        if _OR_RE.match(key):
            cols = tuple(key.split(" OR "))
            for c in cols:
                if c not in columns:
                    raise FilterError(f"filter {key!r}: unknown column {c!r}; known: {sorted(columns)}")
            values = value if isinstance(value, list) else [value] * len(cols)
            if len(values) != len(cols):
                raise FilterError(f"filter {key!r}: give one value per column ({len(cols)}), got {len(values)}")
            for c, v in zip(cols, values, strict=True):
                _check_scalar(key, v, c, columns[c])
            out.append(Condition(cols, "OR", tuple(values)))
            continue
        m = _KEY_RE.match(key)
        if not m:
            raise FilterError(
                f"invalid filter key {key!r}: expected 'column' or 'column OP' with OP one of "
                f"{', '.join(OPERATORS)} (single spaces, no trailing space), or 'col1 OR col2'")
        col, op = m.group("col"), m.group("op") or "="
        if col not in columns:
            raise FilterError(f"filter {key!r}: unknown column {col!r}; known: {sorted(columns)}")
        if op in ("<", "<=", ">", ">="):
            if isinstance(value, bool) or not isinstance(value, Number):
                raise FilterError(f"filter {key!r}: {op} needs a number, got {value!r}")
            if columns[col] != "number":
                raise FilterError(f"filter {key!r}: {op} only applies to numeric columns")
            _check_range(key, value)
        elif op == "LIKE":
            if not isinstance(value, str) or not value.strip():
                raise FilterError(f"filter {key!r}: LIKE needs a non-empty string")
            if len(value) > MAX_LIKE_PATTERN:
                raise FilterError(f"filter {key!r}: LIKE pattern is longer than {MAX_LIKE_PATTERN} characters")
        elif isinstance(value, list):
            if not value:
                raise FilterError(f"filter {key!r}: empty list")
            if len(value) > MAX_FILTER_VALUES:
                raise FilterError(f"filter {key!r}: a list may hold at most {MAX_FILTER_VALUES} values, "
                                  f"got {len(value)}")
            for v in value:
                _check_scalar(key, v, col, columns[col])
        else:
            _check_scalar(key, value, col, columns[col])
        out.append(Condition((col,), op, value))
    return out


def _equals(series: pd.Series, value) -> np.ndarray:
    if isinstance(value, list):
        return series.isin(value).to_numpy()
    if value is None:
        return series.isna().to_numpy()
    return (series == value).fillna(False).to_numpy(dtype=bool)


def _like(series: pd.Series, pattern: str) -> np.ndarray:
    """LIKE in linear time: Arrow's RE2-based kernels (no backtracking), never a Python regex.

    With ``%`` / ``_`` the SQL pattern must match the whole value (case-insensitive);
    without, every word of the pattern must appear as a whole word.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.utf8_lower(pa.array(series.fillna("").astype(str).to_numpy(dtype=object), type=pa.string()))
    p = pattern.lower()
    if "%" in p or "_" in p:
        return np.asarray(pc.match_like(text, p).to_numpy(zero_copy_only=False), dtype=bool)
    mask = np.ones(len(series), dtype=bool)
    for tok in re.findall(r"[a-z0-9]+", p):
        found = pc.match_substring_regex(text, f"(^|[^a-z0-9]){tok}($|[^a-z0-9])")
        mask &= np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)
    return mask


def evaluate(conditions: list[Condition], frame: pd.DataFrame) -> np.ndarray:
    """Boolean mask of the rows of ``frame`` that satisfy every condition."""
    mask = np.ones(len(frame), dtype=bool)
    for c in conditions:
        s = frame[c.columns[0]]
        if c.op == "=":
            mask &= _equals(s, c.value)
        elif c.op == "NOT":
            mask &= ~_equals(s, c.value) & s.notna().to_numpy()
        elif c.op == "LIKE":
            mask &= _like(s, str(c.value))
        elif c.op == "OR":
            any_of = np.zeros(len(frame), dtype=bool)
            for col, v in zip(c.columns, c.value, strict=True):
                any_of |= _equals(frame[col], v)
            mask &= any_of
        else:
            num = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
            with np.errstate(invalid="ignore"):
                mask &= {"<": num < c.value, "<=": num <= c.value, ">": num > c.value, ">=": num >= c.value}[c.op]
    return mask


def filters_json_schema(columns: dict[str, str]) -> dict:
    """The JSON schema of a filter object over ``columns``: every key this module accepts, with its value type.

    ``col1 OR col2`` keys are accepted too but left out: their value's type depends on which
    columns they name, which a schema cannot state.
    """
    bounds = {"minimum": -NUMBER_BOUND, "maximum": NUMBER_BOUND}
    scalar = {"number": {"type": "number", **bounds}, "string": {"type": "string"}}
    properties: dict[str, dict] = {}
    for col, kind in sorted(columns.items()):
        value = {"anyOf": [scalar[kind], {"type": "null"}]}
        one_or_list = {"anyOf": [*value["anyOf"], {"type": "array", "items": value, "minItems": 1}]}
        properties[col] = properties[f"{col} NOT"] = one_or_list
        if kind == "number":
            for op in ("<", "<=", ">", ">="):
                properties[f"{col} {op}"] = scalar["number"]
        else:
            properties[f"{col} LIKE"] = {"type": "string", "minLength": 1, "maxLength": MAX_LIKE_PATTERN,
                                         "pattern": r"\S"}
    return {"type": "object", "properties": properties, "additionalProperties": False,
            "description": "Databricks Vector Search filters, ANDed: {\"column\": value} (a list means IN), "
                           "{\"column NOT\": value}, {\"column <|<=|>|>=\": number}, {\"column LIKE\": text} "
                           "and {\"col1 OR col2\": [v1, v2]}; values of the column's type."}


# -- the SQL-like dialect of storage-optimized Vector Search endpoints ---------------------------------
# Storage-optimized endpoints take "a SQL-like filter string similar to a WHERE clause" instead of the
# dict (https://docs.databricks.com/aws/en/vector-search/vector-search-filtering-guide); the client sends
# it as the query's ``filter_string``. It is generated from the conditions parse_filters has validated, so
# both dialects accept exactly the same requests.
def _sql_literal(value) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, Number):
        return repr(int(value)) if float(value).is_integer() and abs(value) < NUMBER_BOUND else repr(float(value))
    return "'" + str(value).replace("'", "''") + "'"


def _sql_equals(column: str, value, negate: bool = False) -> str:
    if value is None:
        return f"{column} IS {'NOT ' if negate else ''}NULL"
    if isinstance(value, list):  # never empty: parse_filters refuses an empty list
        present = [v for v in value if v is not None]
        listed_null = len(present) < len(value)
        inner = ", ".join(_sql_literal(v) for v in present)
        if negate:  # NOT: none of the values, and not null when null is listed
            parts = ([f"{column} NOT IN ({inner})"] if present else []) + (
                [f"{column} IS NOT NULL"] if listed_null else [])
            return " AND ".join(parts)
        parts = ([f"{column} IN ({inner})"] if present else []) + ([f"{column} IS NULL"] if listed_null else [])
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"
    return f"{column} {'!=' if negate else '='} {_sql_literal(value)}"


def _sql_like(column: str, pattern: str) -> str:
    """``%``/``_`` patterns as they are; a plain LIKE (the dict dialect's token match: every word present) as one
    ``%word%`` per word. The endpoint decides case and word boundaries (a substring, not a whole word: the
    only documented difference from the local index)."""
    if "%" in pattern or "_" in pattern:
        return f"{column} LIKE {_sql_literal(pattern)}"
    words = re.findall(r"[A-Za-z0-9]+", pattern)
    return " AND ".join(f"{column} LIKE {_sql_literal('%' + w + '%')}" for w in words) or f"{column} LIKE '%'"


def sql_filter(filters: dict | Filters | None, columns: dict[str, str]) -> str | None:
    """The filter object as a storage-optimized endpoint's filter string (None for no filters); validated first."""
    parts = []
    for c in parse_filters(filters, columns):
        column = c.columns[0]
        if c.op == "=":
            parts.append(_sql_equals(column, c.value))
        elif c.op == "NOT":
            parts.append(_sql_equals(column, c.value, negate=True))
        elif c.op == "LIKE":
            parts.append(_sql_like(column, str(c.value)))
        elif c.op == "OR":
            parts.append("(" + " OR ".join(_sql_equals(col, v) for col, v in zip(c.columns, c.value, strict=True))
                         + ")")
        else:
            parts.append(f"{column} {c.op} {_sql_literal(c.value)}")
    return " AND ".join(f"({p})" if " OR " in p and not p.startswith("(") else p for p in parts) or None
