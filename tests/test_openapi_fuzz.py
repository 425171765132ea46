"""schemathesis against the service's OpenAPI document: no 5xx, every 4xx explained, the schema tells the truth.

Every check is on (``not_a_server_error``, ``status_code_conformance``, ``response_schema_conformance``,
``positive_data_acceptance``, ``negative_data_rejection``…), with a bounded number of examples per
operation. ``tests/schemathesis_hooks.py`` gives values for JSON form fields and real images for uploads.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402

import tests.schemathesis_hooks  # noqa: E402,F401 - registers formats and media types
from fashion_catalog.app.main import create_app  # noqa: E402
from fashion_catalog.personalization.features import build_user_features  # noqa: E402
from fashion_catalog.streaming.runner import Embedder  # noqa: E402
from tests.conftest import make_config  # noqa: E402
from tests.helpers import append_products, draw_image, product, stream_once  # noqa: E402

EXAMPLES_PER_OPERATION = 30


@pytest.fixture(scope="module")
def api_schema(spark, tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    config = make_config(str(root), tiny_model_dir, search__max_upload_bytes=200_000)
    rows = [product(pid, draw_image(f"{root}/img/{pid}.jpg", pid), price=10.0 * pid,
                    article_type=art, gender=gender)
            for pid, art, gender in [(1, "Tshirts", "Men"), (2, "Dresses", "Women"), (3, "Jeans", "Men")]]
    append_products(spark, config, rows)
    stream_once(Embedder(spark, config))
    build_user_features(spark, config)
    app = create_app(config, background_sync=False)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_the_api_keeps_the_promises_of_its_schema(case):
    response = case.call_and_validate()
    if 400 <= response.status_code < 500:
        assert response.json().get("detail"), f"{case.method} {case.path}: a {response.status_code} without a message"
