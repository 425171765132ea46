"""Integration tests: the search service over a real multimodal table (FastAPI TestClient)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from fashion_catalog.app.main import create_app, refresh
from fashion_catalog.personalization.features import build_user_features
from fashion_catalog.streaming.runner import Embedder
from tests.conftest import make_config
from tests.helpers import append_products, draw_image, product, stream_once

CATALOG = [  # id, article type, colour, price, gender, master category
    (1, "Tshirts", "Black", 20.0, "Men", "Apparel"),
    (2, "Jeans", "Blue", 30.0, "Men", "Apparel"),
    (3, "Sports Shoes", "Red", 80.0, "Men", "Footwear"),
    (4, "Track Pants", "Black", 50.0, "Women", "Apparel"),
    (5, "Dresses", "Red", 300.0, "Women", "Apparel"),
    (6, "Heels", "Gold", 250.0, "Women", "Footwear"),
    (7, "Wallets", "Brown", 40.0, "Men", "Accessories"),
    (8, "Belts", "Tan", 25.0, "Men", "Accessories"),
    (9, "Kurtas", "Maroon", 60.0, "Women", "Apparel"),
    (10, "Shirts", "Beige", 45.0, "Men", "Apparel"),
    (12, "Dresses", "Black", 80.0, "Women", "Apparel"),  # a luxury category below the luxury persona's minimum
]
# What each persona's filters (category preferences, price range) admit from CATALOG.
EXPECTED_RECOMMENDATIONS = {"user_006327": {1, 2}, "user_007598": {1, 3, 4}, "user_008828": {5, 6},
                            "user_001328": {7, 8}, "user_009809": {8, 9, 10}}
PERSONAS = ["user_006327", "user_007598", "user_008828", "user_001328", "user_009809"]


def _png(colour=(200, 30, 30), size=(40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


UC = "main.fashion_demo"


# The local index, and Databricks Vector Search (the workspace stand-in) with each endpoint type: standard
# endpoints take dict filters, storage-optimized ones SQL-like filter strings.
BACKENDS = ["local", "databricks", "databricks-storage-optimized"]


@pytest.fixture(scope="module")
def prepared(spark, tiny_model_dir, tmp_path_factory):
    """The catalog streamed and the user features built once; a copy of the tables for each backend."""
    root = tmp_path_factory.mktemp("api")
    config = make_config(str(root), tiny_model_dir, search__max_upload_bytes=200_000)
    rows = [product(pid, draw_image(f"{root}/img/{pid}.jpg", pid), article_type=art, base_color=col, price=price,
                    gender=gender, master_category=master, product_display_name=f"Demo {gender} {col} {art}")
            for pid, art, col, price, gender, master in CATALOG]
    append_products(spark, config, rows)
    stream_once(Embedder(spark, config))
    build_user_features(spark, config)
    copies = {}
    for backend in BACKENDS:
        copies[backend] = str(tmp_path_factory.mktemp(f"api-{backend}"))
        shutil.copytree(config.root, os.path.join(copies[backend], "data"))
    return copies


@contextlib.contextmanager
def _serve(backend: str, base: str, spark, tiny_model_dir):
    """The service over the tables under ``base``: the local index, or Databricks Vector Search (a stand-in)."""
    config = make_config(base, tiny_model_dir, search__max_upload_bytes=200_000)
    embedder = Embedder(spark, config)
    if backend == "local":
        # The local run also covers the query batcher (search.batch_queries, off by default).
        app = create_app(make_config(base, tiny_model_dir, search__max_upload_bytes=200_000,
                                     search__batch_queries=True), background_sync=False)
        with TestClient(app) as client:
            yield client, config, embedder, app
        return
    from fashion_catalog.vectorsearch.lifecycle import create_configured_indexes
    from tests.vector_search_standin import WorkspaceStandIn

    workspace = WorkspaceStandIn(tables={f"{UC}.product_embeddings_multimodal": config.tables.embeddings.path,
                                                f"{UC}.user_style_features": config.tables.user_features.path})
    service_config = make_config(
        base, tiny_model_dir, search__max_upload_bytes=200_000, search__backend="databricks",
        tables__embeddings={"name": f"{UC}.product_embeddings_multimodal"},
        tables__user_features={"name": f"{UC}.user_style_features"},
        vector_search__workspace_url=workspace.url, vector_search__warehouse_id="warehouse-1",
        vector_search__endpoint_type="STORAGE_OPTIMIZED" if backend.endswith("storage-optimized") else "STANDARD")
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("DATABRICKS_HOST", workspace.url)
            patch.setenv("DATABRICKS_TOKEN", workspace.token)
            for var in ("DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_CONFIG_PROFILE"):
                patch.delenv(var, raising=False)
            create_configured_indexes(service_config, timeout_s=10)
            app = create_app(service_config, background_sync=False)
            with TestClient(app) as client:
                yield client, config, embedder, app
    finally:
        workspace.close()


@pytest.fixture(scope="module", params=BACKENDS)
def env(request, prepared, spark, tiny_model_dir):
    """The whole API suite runs on the local index and on Databricks Vector Search (a loopback stand-in).

    Read-only: a test that adds products takes ``own_env``, so no test depends on which ran before it."""
    with _serve(request.param, prepared[request.param], spark, tiny_model_dir) as served:
        yield served


@pytest.fixture(params=BACKENDS)
def own_env(request, prepared, spark, tiny_model_dir, tmp_path):
    """Like ``env``, on a copy of the catalog of this test's own."""
    base = str(tmp_path / "own")
    shutil.copytree(os.path.join(prepared[request.param], "data"), os.path.join(base, "data"))
    with _serve(request.param, base, spark, tiny_model_dir) as served:
        yield served


def test_health_reports_index_and_model(env, request):
    client, config, _, _ = env
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["model"] == "tiny-clip-test"
    assert body["index"]["rows"] == len(CATALOG) and body["index"]["lag_versions"] == 0
    assert body["users"] == 5
    if request.node.callspec.params["env"] != "local":  # each Vector Search index's lag
        lags = body["index"]["indexes"]
        assert set(lags) == {"image", "text", "hybrid"}
        for lag in lags.values():
            assert isinstance(lag["indexed_version"], int) and 0 <= lag["seconds_since_sync"] < 120, lag


def test_text_search_is_cross_modal_and_returns_all_columns(env):
    client, *_ = env
    # Naming an index is a search of exactly that vector index, as before modes existed.
    r = client.post("/api/v1/search/text", json={"query": "red dress", "index": "image", "limit": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["index"] == "image" and body["mode"] == "vector" and body["count"] == 4
    first = body["results"][0]
    for col in ("product_id", "product_display_name", "price", "base_color", "image_path", "gender", "score"):
        assert col in first
    scores = [x["score"] for x in body["results"]]
    assert scores == sorted(scores, reverse=True)
    r = client.post("/api/v1/search/text", json={"query": "red dress", "index": "hybrid",
                                                "filters": {"price <=": 50, "gender": ["Women"]}})
    assert [x["product_id"] for x in r.json()["results"]] == [4]


def test_text_search_reads_the_query_and_fuses_keyword_and_vector_results(env):
    client, *_ = env
    r = client.post("/api/v1/search/text", json={"query": "red dresses for women under 400", "limit": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mode"] == "fused" and body["index"] == "fused"  # search.default_mode
    meaning = body["interpreted"]
    assert meaning["filters"] == {"price <": 400, "gender": ["Women"]}  # this catalogue has no Unisex products
    assert meaning["boosts"] == {"base_color": ["Red"], "article_type": ["Dresses"]}
    assert meaning["text"] == "red dresses" and meaning["vector_text"] == "red dresses"
    assert [p["kind"] for p in meaning["phrases"]] == ["price", "gender", "colour", "type"]
    results = body["results"]
    assert results and all(x["gender"] in ("Women", "Unisex") and x["price"] < 400 for x in results)
    assert results[0]["product_id"] == 5 and results[0]["ranks"]  # name, colour and type all match
    assert body["exact_matches"] == 1  # CATALOG by hand: 5 is the only red dress
    # No red tshirt at all: the answer says so (0 exact) and still shows the closest.
    none = client.post("/api/v1/search/text", json={"query": "red tshirt for men under 50"}).json()
    assert none["exact_matches"] == 0 and none["results"]
    # The shopper removes the price chip: the phrase is read as words again.
    r = client.post("/api/v1/search/text", json={"query": "red dresses for women under 100", "ignore": ["under 100"]})
    assert "price <" not in r.json()["interpreted"]["filters"] and 5 in [x["product_id"] for x in r.json()["results"]]
    # Keyword mode: BM25 over name and description; understanding off: the query as typed, no interpretation.
    r = client.post("/api/v1/search/text", json={"query": "demo wallets", "mode": "keyword", "understand": False})
    body = r.json()
    assert body["mode"] == "keyword" and body["interpreted"] is None and body["results"][0]["product_id"] == 7
    # Synonyms: "billfold" is not a catalogue word; conf/synonyms.txt maps it to wallets.
    r = client.post("/api/v1/search/text", json={"query": "billfold", "mode": "keyword"})
    assert r.json()["interpreted"]["synonyms"] == ["wallets"] and r.json()["results"][0]["product_id"] == 7


@pytest.mark.parametrize(
    "body,status,message",
    [
        ({"query": "   "}, 400, "query text is empty"),
        ({"query": "x", "mode": "keyword", "index": "image"}, 400, "does not take an index"),
        ({"query": "x", "mode": "semantic"}, 422, "mode"),
        ({"query": "x", "ignore": ["a"] * 21}, 422, "ignore"),
        ({"query": "   ", "mode": "keyword"}, 400, "query text is empty"),
        ({"query": "x", "filters": {"price <= ": 50}}, 400, "invalid filter key 'price <= '"),
        ({"query": "x", "filters": {"colour": "Red"}}, 400, "unknown column 'colour'"),
        ({"query": "x", "index": "nope"}, 422, "index"),
        ({"query": "x", "limit": 0}, 422, "limit"),
    ],
)
def test_text_search_errors(env, body, status, message):
    client, *_ = env
    r = client.post("/api/v1/search/text", json=body)
    assert r.status_code == status and message in r.text


def test_image_search_and_upload_errors(env, reference_clip, tmp_path):
    client, *_ = env
    r = client.post("/api/v1/search/image", files={"file": ("q.png", _png(), "image/png")},
                    data={"limit": "3", "filters": json.dumps({"master_category": "Apparel"})})
    assert r.status_code == 200 and r.json()["count"] == 3
    apparel = [pid for pid, _art, _col, _price, _gender, master in CATALOG if master == "Apparel"]
    expected = _reference_order(client, reference_clip, Image.open(io.BytesIO(_png())), tmp_path, apparel)
    assert [x["product_id"] for x in r.json()["results"]] == expected[:3]
    r = client.post("/api/v1/search/image", files={"file": ("q.txt", b"hello", "text/plain")})
    assert r.status_code == 415 and "not a usable image" in r.text
    r = client.post("/api/v1/search/image", files={"file": ("big.png", b"\0" * 300_000, "image/png")})
    assert r.status_code == 413
    r = client.post("/api/v1/search/image", files={"file": ("q.png", _png(), "image/png")}, data={"filters": "{bad"})
    assert r.status_code == 400 and "not valid JSON" in r.text


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_hybrid_search(env, reference_clip, tmp_path):
    client, *_ = env
    # understand false: the hybrid index alone, the words as typed (with words read, see the test below).
    r = client.post("/api/v1/search/hybrid", data={"query": "black shirt", "text_weight": "0.7", "limit": "5",
                                                   "understand": "false"},
                    files={"file": ("q.png", _png((10, 10, 10)), "image/png")})
    assert r.status_code == 200 and r.json()["index"] == "hybrid" and r.json()["count"] == 5
    assert r.json()["interpreted"] is None
    # The order worked out with an independent numpy CLIP: query normalize(0.7 t + 0.3 i), products
    # normalize(0.5 t + 0.5 i) of their stored descriptions and photos (embedding.hybrid_text_weight 0.5).
    query_png = tmp_path / "q.png"
    query_png.write_bytes(_png((10, 10, 10)))
    query = _unit(0.7 * reference_clip.text(["black shirt"])[0] + 0.3 * reference_clip.images([str(query_png)])[0])
    from deltalake import DeltaTable, QueryBuilder

    table = QueryBuilder().register("t", DeltaTable(env[1].tables.embeddings.path)).execute(
        "SELECT product_id, description, image_path FROM t").read_all()
    table = pa.table(table).to_pylist()
    rows = {row["product_id"]: row for row in table}
    pids = [row[0] for row in CATALOG]
    products = _unit(0.5 * reference_clip.text([rows[pid]["description"] for pid in pids])
                     + 0.5 * reference_clip.images([rows[pid]["image_path"] for pid in pids]))
    expected = [pids[i] for i in np.argsort(-(products @ query), kind="stable")][:5]
    assert [x["product_id"] for x in r.json()["results"]] == expected
    assert client.post("/api/v1/search/hybrid", data={"query": "black shirt"}).status_code == 200
    r = client.post("/api/v1/search/hybrid", data={"text_weight": "0.5"})
    assert r.status_code == 400 and "give a text query, an image, or both" in r.text
    assert client.post("/api/v1/search/hybrid", data={"query": "x", "text_weight": "2"}).status_code == 422


def test_hybrid_and_image_search_read_the_words_filters(env, reference_clip, tmp_path):
    client, *_ = env
    photo = {"file": ("q.png", _png((200, 30, 30)), "image/png")}
    r = client.post("/api/v1/search/hybrid", data={"query": "red dress under 50", "limit": "10"}, files=photo)
    assert r.status_code == 200, r.text
    body = r.json()
    meaning = body["interpreted"]
    assert meaning["filters"] == {"price <": 50}
    assert meaning["boosts"] == {"base_color": ["Red"], "article_type": ["Dresses"]}
    assert [(p["phrase"], p["kind"], p["mode"]) for p in meaning["phrases"]][0] == ("under 50", "price", "filter")
    under_50 = {pid for pid, _art, _col, price, _gender, _master in CATALOG if price < 50}  # by hand: 1, 2, 7, 8, 10
    assert {x["product_id"] for x in body["results"]} == under_50 and body["mode"] == "fused"
    # The shopper removes the price chip: the red dress (300) is back, ranked first (name, colour and type).
    r = client.post("/api/v1/search/hybrid", files=photo,
                    data={"query": "red dress under 50", "ignore": json.dumps(["under 50"])})
    assert "price <" not in r.json()["interpreted"]["filters"] and r.json()["results"][0]["product_id"] == 5
    # The image route takes words for their filters only: every result under 50, ranked by the photo alone.
    r = client.post("/api/v1/search/image", files=photo, data={"query": "red dress under 50", "limit": "3"})
    assert r.status_code == 200, r.text
    assert r.json()["interpreted"]["filters"] == {"price <": 50} and r.json()["interpreted"]["boosts"] == {}
    expected = _reference_order(client, reference_clip, Image.open(io.BytesIO(_png((200, 30, 30)))), tmp_path,
                                sorted(under_50))
    assert [x["product_id"] for x in r.json()["results"]] == expected[:3]
    r = client.post("/api/v1/search/hybrid", files=photo, data={"query": "red dress", "ignore": "[1]"})
    assert r.status_code == 400 and "ignore must be a JSON list" in r.text


def test_brands_are_read_from_the_catalogue_on_every_backend(env):
    """Every CATALOG name starts "Demo <gender> ...": the brand vocabulary (the local index's rows, or the SQL
    warehouse's count on Databricks) holds Demo, and "only demo" is a filter every backend applies."""
    client, *_ = env
    r = client.post("/api/v1/search/text", json={"query": "only demo tshirts for men", "limit": 5})
    assert r.status_code == 200, r.text
    meaning = r.json()["interpreted"]
    assert meaning["only"] == {"brand": ["Demo"]} and meaning["filters"]["product_display_name LIKE"] == "Demo"
    assert ("only demo", "brand", "filter") in [(p["phrase"], p["kind"], p["mode"]) for p in meaning["phrases"]]
    assert r.json()["results"][0]["product_id"] == 1  # the one men's t-shirt: brand, type and gender


def test_users_and_facets_say_what_they_hold_and_never_an_embedding(env):
    client, *_ = env
    assert client.get("/api/v1/examples").json() == [
        "red dress under 100", "black jeans for men", "white sports shoes", "brown watch for women", "party bag"]
    users = client.get("/api/v1/users").json()
    # The personas file, read by hand: ids, segments and price ranges.
    assert {(u["user_id"], u["segment"], u["min_price"], u["max_price"]) for u in users} == {
        ("user_006327", "Budget-Conscious Shopper", 0, 40), ("user_007598", "Athletic Performance", 20, 200),
        ("user_008828", "Luxury Fashionista", 100, 1000), ("user_001328", "Casual Accessories Lover", 10, 150),
        ("user_009809", "Vintage Style Enthusiast", 15, 250)}
    assert all("user_embedding" not in u and "embedding" not in json.dumps(u) for u in users)
    facets = client.get("/api/v1/facets").json()
    # The catalogue's values, sorted, from CATALOG above.
    assert facets == {
        "gender": ["Men", "Women"],
        "base_color": ["Beige", "Black", "Blue", "Brown", "Gold", "Maroon", "Red", "Tan"],
        "master_category": ["Accessories", "Apparel", "Footwear"],
        "article_type": ["Belts", "Dresses", "Heels", "Jeans", "Kurtas", "Shirts", "Sports Shoes", "Track Pants",
                         "Tshirts", "Wallets"]}


def test_each_persona_gets_different_recommendations(env):
    client, *_ = env
    seen = {}
    for user in PERSONAS:
        r = client.get(f"/api/v1/recommendations/{user}", params={"limit": 10})
        assert r.status_code == 200, r.text
        seen[user] = {x["product_id"] for x in r.json()["results"]}
        assert seen[user]
    assert seen == EXPECTED_RECOMMENDATIONS  # product 12 is below the luxury persona's minimum price
    # Why, in words (personas.json read by hand: the first two categories and the price range).
    because = client.get("/api/v1/recommendations/user_008828").json()["because"]
    assert because == {"user_id": "user_008828", "segment": "Luxury Fashionista",
                       "preferences": ["dresses", "heels", "$100 to $1000"]}
    pairs = [(a, b) for i, a in enumerate(PERSONAS) for b in PERSONAS[i + 1:]]
    assert all(seen[a] != seen[b] for a, b in pairs)
    r = client.get("/api/v1/recommendations/user_000000")
    assert r.status_code == 404 and "unknown user" in r.text and "user_006327" not in r.text


def test_zero_shot_classification(env, reference_clip):
    client, *_ = env
    r = client.post("/api/v1/classify", data={"product_id": "3"})
    assert r.status_code == 200, r.text
    body = r.json()
    probs = [p["probability"] for p in body["predictions"]]
    types = sorted({art for _, art, *_ in CATALOG})
    assert body["label_set"] == "article_type" and len(probs) == len(types) and abs(sum(probs) - 1) < 1e-6
    assert sorted(p["label"] for p in body["predictions"]) == types
    # The winner is the label whose prompt (the evaluated wording) is nearest to the product's photo, both
    # encoded by an independent numpy CLIP (tests/reference_clip.py).
    from fashion_catalog.encoders.prompts import zero_shot_prompt

    image = reference_clip.images([client.app.state.services.store.get(3)["image_path"]])[0]
    expected = types[int(np.argmax(reference_clip.text([zero_shot_prompt(t) for t in types]) @ image))]
    assert body["top"] == expected and body["predictions"][0]["label"] == expected
    r = client.post("/api/v1/classify", files={"file": ("q.png", _png(), "image/png")},
                    data={"labels": json.dumps(["red", "blue", "green"])})
    assert r.status_code == 200 and {p["label"] for p in r.json()["predictions"]} == {"red", "blue", "green"}
    assert client.post("/api/v1/classify", data={}).status_code == 400
    assert client.post("/api/v1/classify", data={"product_id": "3", "labels": "[1, 2]"}).status_code == 400
    assert client.post("/api/v1/classify", data={"product_id": "999"}).status_code == 404


def test_products_images_page_and_openapi(env):
    client, *_ = env
    assert client.get("/api/v1/products/5").json()["article_type"] == "Dresses"
    assert client.get("/api/v1/products/999").status_code == 404
    img = client.get("/images/5")
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    assert "Fashion search" in client.get("/").text
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/api/v1/search/text", "/api/v1/search/image", "/api/v1/search/hybrid", "/api/v1/classify",
              "/api/v1/recommendations/{user_id}", "/api/v1/products/{product_id}", "/health"):
        assert p in paths


def test_new_product_becomes_searchable_after_sync(own_env, spark):
    client, config, embedder, app = own_env
    path = draw_image(f"{config.root}/img/11.jpg", 11)
    append_products(spark, config, [product(11, path, article_type="Caps", base_color="Green", price=15.0,
                                            product_display_name="Fresh Green Cap")])
    stream_once(embedder)
    refresh(app)
    r = client.post("/api/v1/search/text", json={"query": "cap", "filters": {"article_type": "Caps"}})
    assert [x["product_id"] for x in r.json()["results"]] == [11]
    assert client.get("/health").json()["index"]["lag_versions"] == 0


def _gradient() -> np.ndarray:
    return np.arange(1200, dtype=np.uint16).reshape(30, 40) * 50


# Each upload, and the 8-bit RGB picture it is, worked out by hand: CMYK (0, 255, 255, 0) is pure red; red at
# alpha 128 over white is (255, 127, 127); a 16-bit gradient 0..59950 is stretched to 0..255.
MODES = {
    "CMYK": (lambda: Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "TIFF",
             lambda: Image.new("RGB", (40, 30), (255, 0, 0))),
    "RGBA": (lambda: Image.new("RGBA", (40, 30), (255, 0, 0, 128)), "PNG",
             lambda: Image.new("RGB", (40, 30), (255, 127, 127))),
    "I;16": (lambda: Image.fromarray(_gradient()), "TIFF",
             lambda: Image.fromarray((_gradient() * (255 / 59950)).astype(np.uint8), "L").convert("RGB")),
}


def _reference_order(client, reference_clip, picture: Image.Image, folder, pids) -> list[int]:
    """Products ``pids`` ordered by an independent numpy CLIP's image cosine to ``picture`` (best first)."""
    path = os.path.join(str(folder), "query.png")
    picture.save(path)
    store = client.app.state.services.store
    vectors = reference_clip.images([path] + [store.get(pid)["image_path"] for pid in pids])
    cosines = vectors[1:] @ vectors[0]
    return [pids[i] for i in np.argsort(-cosines, kind="stable")]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_uploads_in_any_mode_are_searched_as_the_picture_they_are(env, mode, reference_clip, tmp_path):
    client, *_ = env
    make, fmt, equivalent = MODES[mode]
    buf = io.BytesIO()
    make().save(buf, fmt)
    r = client.post("/api/v1/search/image", files={"file": ("q.img", buf.getvalue(), "image/tiff")})
    assert r.status_code == 200, r.text
    pids = [row[0] for row in CATALOG]
    assert [x["product_id"] for x in r.json()["results"]] == _reference_order(
        client, reference_clip, equivalent(), tmp_path, pids)


def test_a_decompression_bomb_upload_is_refused_from_its_header(env):
    client, *_ = env
    buf = io.BytesIO()
    Image.new("L", (12000, 12000), 0).save(buf, "PNG", optimize=True)  # small file, 144 Mpx
    assert len(buf.getvalue()) < 200_000
    r = client.post("/api/v1/search/image", files={"file": ("bomb.png", buf.getvalue(), "image/png")})
    assert r.status_code == 415 and "IMAGE_TOO_MANY_PIXELS" in r.text


def test_more_like_this_leaves_out_the_product_and_its_byte_identical_photos(own_env, spark):
    client, config, embedder, app = own_env
    store = app.state.services.store
    copy = f"{config.root}/img/13.jpg"
    os.makedirs(os.path.dirname(copy), exist_ok=True)
    shutil.copyfile(store.get(3)["image_path"], copy)  # the same photo under another product
    append_products(spark, config, [
        product(13, copy, article_type="Sports Shoes", base_color="Red", price=85.0, gender="Men"),
        product(14, f"{config.root}/img/missing.jpg", article_type="Caps", price=10.0)])  # no image vector
    stream_once(embedder)
    refresh(app)
    r = client.get("/api/v1/products/3/similar", params={"limit": 5})
    assert r.status_code == 200, r.text
    got = [x["product_id"] for x in r.json()["results"]]
    vector = store.vector(3, "image")
    expected = [h["product_id"] for h in store.search("image", vector, 20) if h["product_id"] not in (3, 13)][:5]
    assert got == expected and len(got) == 5 and "image_url" in r.json()["results"][0]
    r = client.get("/api/v1/products/3/similar",
                   params={"index": "hybrid", "filters": json.dumps({"gender": "Women"})})
    assert r.status_code == 200 and r.json()["index"] == "hybrid"
    women = {pid for pid, _, _, _, gender, _ in CATALOG if gender == "Women"}
    assert {x["product_id"] for x in r.json()["results"]} == women
    assert client.get("/api/v1/products/999/similar").status_code == 404
    r = client.get("/api/v1/products/14/similar")
    assert r.status_code == 409 and "no image vector" in r.text
    assert client.get("/api/v1/products/14/similar", params={"index": "hybrid"}).status_code == 200
    assert client.get("/api/v1/products/3/similar", params={"filters": "{bad"}).status_code == 400
    assert client.get("/api/v1/products/3/similar", params={"index": "nope"}).status_code == 422


def test_an_empty_users_table_is_read_again_with_backoff_not_every_interval():
    from fashion_catalog.search.syncer import IndexSyncer

    class Store:
        synced_version = 7  # the index does not move

        def sync(self):
            pass

    class Users:
        reloads: list[float] = []

        def reload(self, store):
            Users.reloads.append(now[0])

        def __len__(self):
            return 0  # the users table is missing or empty

    now = [0.0]
    syncer = IndexSyncer(Store(), Users(), interval_s=1.0, clock=lambda: now[0])
    for second in range(40):
        now[0] = float(second)
        syncer.refresh()
    # By hand: the first load at 0 s, then again after 2, 4, 8 and 16 s (not once a second).
    assert Users.reloads == [0.0, 2.0, 6.0, 14.0, 30.0]
