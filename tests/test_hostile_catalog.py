"""A hostile catalog, row by row: no value in a product row can make the image code, a batch or a search fail.

Fast unit tests (no Spark): the image code raises only ImageError, each row's work is guarded, decoding
has a bounded cost, and the query reader does not mistake sizes and years for prices.
"""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fashion_catalog.encoders import images as codes
from fashion_catalog.encoders.images import ImageError, ImageLimits, image_content_hash, load_image, read_image_bytes

HOSTILE_PATHS = {
    "literal NUL": "{root}/good.jpg\x00.png",
    "NUL in a file URI": "file://{root}/good.jpg%00.png",
    "malformed URI": "file://[x/y.jpg",
    "lone surrogate": "{root}/\udcff.jpg",
    "NUL alone": "\x00",
}


@pytest.fixture
def root(tmp_path):
    Image.new("RGB", (32, 32), (200, 10, 10)).save(tmp_path / "good.jpg", "JPEG")
    return str(tmp_path)


@pytest.mark.parametrize("name", sorted(HOSTILE_PATHS))
def test_an_invalid_image_path_is_an_error_code_never_an_exception(root, name):
    path = HOSTILE_PATHS[name].format(root=root)
    limits = ImageLimits(10**6, 10**6, allowed_roots=(root,))
    assert image_content_hash(path, limits) == "error:" + codes.IMAGE_PATH_INVALID
    with pytest.raises(ImageError) as raised:
        read_image_bytes(path, limits)
    assert raised.value.code == codes.IMAGE_PATH_INVALID
    assert limits.relative(path) is None  # what the search service publishes: nothing, and no 500
    with pytest.raises(ImageError):
        load_image(path, limits)


def test_a_very_long_name_is_an_error_code(root):
    limits = ImageLimits(10**6, 10**6, allowed_roots=(root,))
    assert image_content_hash(f"{root}/{'a' * 5000}.jpg", limits).startswith("error:IMAGE_")


def test_anything_unexpected_in_one_rows_image_work_becomes_that_rows_code(root, monkeypatch):
    """The per-row guard: hashing and decoding never raise out of a batch, whatever happens in a row."""
    from fashion_catalog.udfs import encoding

    limits = ImageLimits(10**6, 10**6, allowed_roots=(root,))
    good, bad = f"{root}/good.jpg", f"{root}/bad.jpg"
    real_hash, real_load = encoding.image_content_hash, encoding.load_image

    def exploding_hash(path, lim):
        if path == bad:
            raise MemoryError("the decoder ran out of memory on this one")
        return real_hash(path, lim)

    def exploding_load(path, lim):
        if path == bad:
            raise RuntimeError("a bug in a codec")
        return real_load(path, lim)

    monkeypatch.setattr(encoding, "image_content_hash", exploding_hash)
    monkeypatch.setattr(encoding, "load_image", exploding_load)
    hashes = encoding.image_hashes(pd.Series([good, bad]), limits)
    assert hashes[0] == real_hash(good, limits) and hashes[1] == "error:" + codes.IMAGE_UNEXPECTED_ERROR

    class Encoder:
        logit_scale = None

        def encode_images(self, images, batch_size=32):
            return np.ones((len(images), 4)) / 2

    frame = encoding.encode_image_frame(Encoder(), pd.Series([good, bad]), limits, 8)
    assert frame["error"].tolist() == [None, codes.IMAGE_UNEXPECTED_ERROR]
    assert frame["embedding"][0] is not None and frame["embedding"][1] is None


def _png16(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    gradient = (np.arange(width, dtype=np.uint32)[None, :] * 65535 // max(width - 1, 1)).astype(np.uint16)
    Image.fromarray(np.repeat(gradient, height, axis=0), mode="I;16").save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def _float_tiff(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((height, width), np.float32), mode="F").save(buffer, "TIFF", compression="tiff_deflate")
    return buffer.getvalue()


MEASURE = r"""
import sys, io, resource
from fashion_catalog.encoders.images import ImageLimits, decode_image
data = open(sys.argv[1], "rb").read()
def peak_kb():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
before = peak_kb()
image = decode_image(data, ImageLimits(10**9, 50_000_000))
assert image.mode == "RGB"
print(peak_kb() - before, image.size[0], image.size[1])
"""


@pytest.mark.parametrize("kind", ["png16", "float-tiff"])
def test_decoding_a_small_file_of_huge_16_bit_or_float_pixels_costs_a_bounded_amount_of_memory(tmp_path, kind):
    """A 6300x6300 16-bit PNG (tens of KB on disk) or float TIFF must not cost a gigabyte to decode
    (it cost ~1 GB as float64 copies of the full image); measured in a fresh process with /proc."""
    data = _png16(6300, 6300) if kind == "png16" else _float_tiff(6300, 6300)
    assert len(data) < 400_000
    path = tmp_path / "image.bin"
    path.write_bytes(data)
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, check=True,
                          timeout=120)
    delta_kb, width, height = (int(x) for x in done.stdout.split())
    assert delta_kb < 300 * 1024, f"decoding took {delta_kb / 1024:.0f} MB more"
    assert max(width, height) <= 4096  # reduced on the way (CLIP reads 224 px)


def test_the_decoded_gradient_keeps_its_range_after_the_16_bit_reduction():
    from fashion_catalog.encoders.images import decode_image

    image = decode_image(_png16(4000, 300), ImageLimits(10**9, 50_000_000))
    row = np.asarray(image)[0, :, 0]
    assert row[0] <= 2 and row[-1] >= 253 and (np.diff(row.astype(int)) >= 0).all()


@pytest.mark.parametrize("fmt", ["PPM", "TGA", "SGI"])
def test_uploads_in_formats_outside_the_api_list_are_refused(fmt):
    from fashion_catalog.search.queries import BadQueryError, QueryEncoder

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(buffer, fmt)
    queries = QueryEncoder(None, ImageLimits(10**6, 10**6), max_upload_bytes=10**6, model_id="m")
    with pytest.raises(BadQueryError) as raised:
        queries.decode_upload(buffer.getvalue())
    assert raised.value.status == 415


# -- query reading: sizes, years and big numbers are not prices -------------------------------------
READINGS = {
    # worked out by hand: what a shopper means
    "shoes under 1,500": {"price <": 1500},
    "under 1e308": {},
    "size 10 to 12 shoes": {},
    "shirts from 2019": {},
    "jeans in 2012": {},
    "kurta under $1,299.99": {"price <": 1299.99},
    "between 1,000 and 2,000": {"price >=": 1000, "price <=": 2000},
    "size 8 shoes under 50": {"price <": 50},
    "shoes size 9 under 40": {"price <": 40},
    "dress under 50": {"price <": 50},
    "watch 2015 collection": {},
    "2 for 1": {},
    "socks 3 to 5 pairs": {},
    "from 20 to 40": {"price >=": 20, "price <=": 40},
    "over 100": {"price >": 100},
}


@pytest.mark.parametrize("query", sorted(READINGS))
def test_the_query_reader_takes_prices_and_leaves_sizes_years_and_counts(query):
    from fashion_catalog.search.understanding import Vocabulary, interpret

    got = interpret(query, Vocabulary()).filters
    assert {k: v for k, v in got.items() if k.startswith("price")} == READINGS[query]


# -- filters: bounded lists, every malformed value a 400 ---------------------------------------------
def test_a_filter_list_longer_than_the_cap_is_refused_naming_the_key():
    from fashion_catalog.indexes.filters import MAX_FILTER_VALUES, FilterError, parse_filters

    with pytest.raises(FilterError, match="'gender'.*at most 1000"):
        parse_filters({"gender": ["Men"] * (MAX_FILTER_VALUES + 1)}, {"gender": "string"})
    assert parse_filters({"gender": ["Men"] * MAX_FILTER_VALUES}, {"gender": "string"})


def test_a_number_with_thousands_of_digits_is_a_bad_request_not_a_server_error():
    from fastapi import HTTPException

    from fashion_catalog.app.routes.v1.search import _parse_filters

    with pytest.raises(HTTPException) as raised:
        _parse_filters('{"price <": ' + "9" * 5000 + "}")  # past Python's int digit limit
    assert raised.value.status_code == 400


def test_keyword_search_finds_a_product_while_the_sync_applies_its_update(tmp_path, monkeypatch):
    """While a sync applies an update, keyword search on the state readers hold still finds the product
    (the old text until the swap), never nothing: the window is forced, not raced."""
    from deltalake import DeltaTable

    from fashion_catalog.indexes.local import LocalIndexStore
    from tests.helpers import write_synthetic_embeddings

    path = str(tmp_path / "emb")
    write_synthetic_embeddings(path, 3, seed=1, dim=8)
    store = LocalIndexStore(path, dimension=8)
    store.sync()
    DeltaTable(path).update(predicate="product_id = 1", updates={"product_display_name": "'Synthetic renamed 1'"})
    builder, seen = store.follower.builder, []
    real_append = builder._append

    def append_while_a_shopper_searches(state, data, fresh=False):
        seen.append([r["product_id"] for r in store.keyword_search("synthetic", 10)])  # mid-sync
        return real_append(state, data, fresh)

    monkeypatch.setattr(builder, "_append", append_while_a_shopper_searches)
    store.sync()
    assert len(seen) == 1 and sorted(seen[0]) == [0, 1, 2], seen
    assert sorted(r["product_id"] for r in store.keyword_search("renamed", 10)) == [1]


def test_health_shows_ids_and_codes_not_paths_or_backtraces():
    from fashion_catalog.app.routes.site import public_error

    raw = ("Generic DeltaTable error: Object at location /srv/data/delta/product_embeddings/_delta_log/"
           "00000000000000000042.json not found\n  File \"/usr/lib/python3/site.py\", line 3\nstack backtrace:\n"
           "   0: deltalake::x")
    shown = public_error(f"DeltaError: {raw}")
    assert "/srv" not in shown and "backtrace" not in shown and "\n" not in shown and shown.startswith("DeltaError")
