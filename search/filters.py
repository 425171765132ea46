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


def _check_scalar(key: str, value) -> None:
    if value is None or isinstance(value, (str, bool, Number)):
        return
    raise FilterError(f"filter {key!r}: value {value!r} must be a string, number or boolean")


def parse_filters(filters: dict | None, columns: dict[str, str]) -> list[Condition]:
    """Validate a filter dict against ``columns`` (name -> "string" | "number") and return conditions."""
    if filters is None:
        return []
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
            for v in values:
                _check_scalar(key, v)
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
        elif op == "LIKE":
            if not isinstance(value, str) or not value.strip():
                raise FilterError(f"filter {key!r}: LIKE needs a non-empty string")
        elif isinstance(value, list):
            if not value:
                raise FilterError(f"filter {key!r}: empty list")
            for v in value:
                _check_scalar(key, v)
        else:
            _check_scalar(key, value)
        out.append(Condition((col,), op, value))
    return out


def _equals(series: pd.Series, value) -> np.ndarray:
    if isinstance(value, list):
        return series.isin(value).to_numpy()
    if value is None:
        return series.isna().to_numpy()
    return (series == value).fillna(False).to_numpy(dtype=bool)


def _like(series: pd.Series, pattern: str) -> np.ndarray:
    text = series.fillna("").astype(str).str.lower()
    p = pattern.lower()
    if "%" in p or "_" in p:
        regex = "^" + "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in p) + "$"
        return text.str.match(regex, flags=re.DOTALL).to_numpy(dtype=bool)
    tokens = re.findall(r"[a-z0-9]+", p)
    mask = np.ones(len(series), dtype=bool)
    for tok in tokens:
        mask &= text.str.contains(rf"(?<![a-z0-9]){re.escape(tok)}(?![a-z0-9])", regex=True).to_numpy(dtype=bool)
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
