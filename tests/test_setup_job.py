"""The setup job's steps (deploy/setup.py): each does its work once and is harmless to repeat."""

from __future__ import annotations

import pytest

from fashion_catalog.conf import load_config


def test_the_serving_endpoint_is_created_then_left_then_pointed_at_a_new_version(monkeypatch):
    from databricks.sdk import WorkspaceClient

    from fashion_catalog.deploy.setup import ensure_serving_endpoint
    from tests.vector_search_standin import WorkspaceStandIn

    ws = WorkspaceStandIn()
    ws.apps["fashion-search"] = {"name": "fashion-search", "service_principal_client_id": "app-sp-1234"}
    try:
        config = load_config("databricks", overrides={"serving.app_name": "fashion-search"})
        client = WorkspaceClient(host=ws.url, token=ws.token)
        model = "main.fashion_demo.clip_multimodal_encoder"
        first = ensure_serving_endpoint(config, model, "1", workspace=client)
        assert (first["serving"], first["can_query"]) == ("created", "app-sp-1234")
        [entity] = ws.serving["fashion-clip-encoder"]["config"]["served_entities"]
        assert entity == {"entity_name": model, "entity_version": "1", "workload_size": "Small",
                          "scale_to_zero_enabled": True}
        assert ensure_serving_endpoint(config, model, "1", workspace=client)["serving"] == "unchanged"
        assert ensure_serving_endpoint(config, model, "2", workspace=client)["serving"] == "updated"
        assert ws.serving["fashion-clip-encoder"]["config"]["served_entities"][0]["entity_version"] == "2"
        grants = ws.permissions["ep-1"]
        assert {"service_principal_name": "app-sp-1234", "permission_level": "CAN_QUERY"} in grants
    finally:
        ws.close()


def test_the_products_change_data_feed_is_turned_on_once(spark, workspace):
    from fashion_catalog.deploy.setup import prepare_products

    config = workspace.config()
    table = config.tables.products.sql
    spark.sql(f"ALTER TABLE {table} SET TBLPROPERTIES (delta.enableChangeDataFeed = false)")
    assert prepare_products(spark, config, load_catalog=False) == {"products": "change data feed enabled"}
    props = {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {table}").collect()}
    assert props["delta.enableChangeDataFeed"] == "true"
    assert prepare_products(spark, config, load_catalog=False) == {"products": "unchanged"}


def test_unknown_setup_steps_are_refused():
    from fashion_catalog.conf import ConfigError
    from fashion_catalog.deploy.setup import run_setup

    with pytest.raises(ConfigError, match="unknown setup steps \\['tabels'\\]"):
        run_setup(load_config("databricks"), skip=("tabels",))
