"""Value generators for what the OpenAPI document names but JSON Schema cannot generate by itself.

* ``format: json-filters`` / ``json-labels`` / ``json-ignore``: form fields holding JSON (the document states their
  ``contentSchema``); values are drawn from that content schema and serialized.
* ``image/*`` parts: real images of random size, mode and format, so a valid upload is a decodable photo.

Used by ``tests/test_openapi_fuzz.py``, and by the CLI:
``SCHEMATHESIS_HOOKS=tests.schemathesis_hooks schemathesis run http://127.0.0.1:8000/openapi.json --checks all``.
"""

from __future__ import annotations

import io
import json

import schemathesis
from hypothesis import strategies as st
from PIL import Image

from fashion_catalog.app.models import FILTERS_SCHEMA
from fashion_catalog.search.queries import is_blank

_NUMBER = st.one_of(st.integers(-10**6, 10**6), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
_TEXT = st.text(min_size=0, max_size=20)


def _value(schema: dict) -> st.SearchStrategy:
    """Values for one filter key's schema (the shapes ``indexes.filters.filters_json_schema`` writes)."""
    if "anyOf" in schema:
        return st.one_of(*[_value(s) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "number":
        return _NUMBER
    if kind == "array":
        return st.lists(_value(schema["items"]), min_size=schema.get("minItems", 0), max_size=4)
    if "pattern" in schema:  # LIKE: a non-blank pattern within maxLength
        return st.from_regex(r"\A%?[A-Za-z0-9 ]{0,10}[A-Za-z0-9]%?\Z")
    return _TEXT


FILTERS = st.fixed_dictionaries({}, optional={key: _value(s) for key, s in FILTERS_SCHEMA["properties"].items()})
LABELS = st.lists(st.text(min_size=1, max_size=30).filter(str.strip), min_size=1, max_size=8)


@st.composite
def _image(draw, fmt: str) -> bytes:
    mode = draw(st.sampled_from(["RGB", "L", "RGBA"] if fmt != "JPEG" else ["RGB", "L"]))
    size = (draw(st.integers(1, 64)), draw(st.integers(1, 64)))
    colour = draw(st.integers(0, 255))
    buf = io.BytesIO()
    Image.new(mode, size, colour if mode == "L" else (colour, 255 - colour, 128, 255)[: len(mode)]).save(buf, fmt)
    return buf.getvalue()


schemathesis.openapi.format("json-filters", FILTERS.map(json.dumps))
schemathesis.openapi.format("json-labels", LABELS.map(json.dumps))
# The removed chips of a hybrid or image search: non-blank phrases (search.queries.is_blank), as the schema says.
IGNORED = st.lists(st.text(min_size=1, max_size=30).filter(lambda p: not is_blank(p)), max_size=5)
schemathesis.openapi.format("json-ignore", IGNORED.map(json.dumps))
for media, fmt in (("image/png", "PNG"), ("image/jpeg", "JPEG"), ("image/webp", "WEBP"), ("image/gif", "GIF"),
                   ("image/bmp", "BMP"), ("image/tiff", "TIFF")):
    schemathesis.openapi.media_type(media, _image(fmt))


@schemathesis.hook
def filter_case(context, case) -> bool:
    """Leave out multipart bodies holding an empty list: multipart has no way to send one (the field is
    simply absent on the wire), so a body generated as 'invalid' that way arrives as a valid request."""
    body = case.body
    if isinstance(body, dict) and str(case.media_type or "").startswith("multipart/"):
        return not any(isinstance(value, list) and not value for value in body.values())
    return True
