"""What a Databricks deploy needs and a bundle cannot declare, as steps that are harmless to repeat.

The order follows the data: the products table (with its Change Data Feed) → the encoder registered →
its serving endpoint → the embeddings (a backfill) → the Vector Search indexes over them → the users'
style features. Each step returns what it did (``created`` / ``updated`` / ``unchanged`` and details), so
a re-run prints that nothing changed.

Why these are not bundle resources:

* a Delta table is not a bundle resource, and a Delta Sync index's source table must exist, with its
  Change Data Feed on, when the index is created (the bundle's ``vector_search_indexes`` would fail on the
  first deploy, before any table exists);
* a serving endpoint must name an existing model version, and a bundle has no model-version resource (a
  declared endpoint fails the first deploy: databricks/mlops-stacks#217).
"""

from __future__ import annotations

import logging
from typing import Any

from fashion_catalog.conf import Config, ConfigError

log = logging.getLogger(__name__)

STEPS = ("tables", "model", "serving", "embeddings", "indexes", "users")


def prepare_products(spark, config: Config, load_catalog: bool) -> dict:
    """Load the catalogue from ``catalog.source_dir`` (the raw Volume), or turn on the Change Data Feed of an
    existing products table; then create the embeddings and quarantine tables if missing."""
    from fashion_catalog.lakehouse.tables import ensure_all_tables, table_exists

    ref = config.tables.products
    if load_catalog:
        from fashion_catalog.catalog.loader import load_catalog as load

        ensure_all_tables(spark, config)
        return {"products": "loaded", **load(spark, config)}
    if not table_exists(spark, ref):
        raise ConfigError(f"no products table {ref}: load one (--load-catalog true, from {config.catalog_source_dir}) "
                          "or point namespace.catalog/schema at the schema that has it")
    props = {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {ref.sql}").collect()}
    action = "unchanged"
    if props.get("delta.enableChangeDataFeed", "false").lower() != "true":
        spark.sql(f"ALTER TABLE {ref.sql} SET TBLPROPERTIES (delta.enableChangeDataFeed = true)")
        action = "change data feed enabled"
    ensure_all_tables(spark, config)
    return {"products": action}


def _aliased_version(config: Config):
    """The model version ``mlflow.alias`` points at, or None (no alias configured, no such model or alias)."""
    import mlflow

    from fashion_catalog.encoders.registry import setup_mlflow

    name, alias = config.mlflow.registered_model_name, config.mlflow.alias
    if not alias:
        return None
    setup_mlflow(config)
    try:
        return mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None


def register_encoder(config: Config) -> dict:
    """Register ``model.name_or_path`` unless the alias already points at a version of the same source and
    model id; returns the registered name and the version the alias serves."""
    import mlflow

    from fashion_catalog.encoders.registry import register_model

    name = config.mlflow.registered_model_name
    current = _aliased_version(config)
    if current is not None:
        params = mlflow.MlflowClient().get_run(current.run_id).data.params if current.run_id else {}
        if params.get("source") == config.model.name_or_path and params.get("model_id") == config.model.id:
            return {"model": "unchanged", "registered_model": name, "version": str(current.version)}
    result = register_model(config)
    return {"model": "registered", "registered_model": name, "version": str(result["version"])}


def served_model(config: Config) -> dict:
    """The version the serving step points the endpoint at when the model step is skipped: the alias's."""
    name, alias = config.mlflow.registered_model_name, config.mlflow.alias
    current = _aliased_version(config)
    if current is None:
        raise ConfigError(f"no version of {name} has the alias {alias!r} to serve: run the setup's model step "
                          "(drop it from --skip) or register one with the register_model job")
    return {"registered_model": name, "version": str(current.version)}


def ensure_serving_endpoint(config: Config, model_name: str, version: str, workspace=None) -> dict:
    """Create the Model Serving endpoint of the encoder, or point it at ``version``; give the App's service
    principal CAN_QUERY on it (https://docs.databricks.com/api/workspace/servingendpoints)."""
    from databricks.sdk.service.serving import (
        EndpointCoreConfigInput,
        ServedEntityInput,
        ServingEndpointAccessControlRequest,
        ServingEndpointPermissionLevel,
    )

    se = config.serving
    if not se.endpoint_name:
        return {"serving": "skipped (serving.endpoint_name is null)"}
    w = workspace or _workspace(config)
    entity = ServedEntityInput(entity_name=model_name, entity_version=str(version), workload_size=se.workload_size,
                               scale_to_zero_enabled=se.scale_to_zero)
    existing = _serving_endpoint(w, se.endpoint_name)
    if existing is None:
        w.serving_endpoints.create(name=se.endpoint_name, config=EndpointCoreConfigInput(name=se.endpoint_name,
                                                                                        served_entities=[entity]))
        action = "created"
    elif _served_version(existing, model_name) != str(version):
        w.serving_endpoints.update_config(name=se.endpoint_name, served_entities=[entity])
        action = "updated"
    else:
        action = "unchanged"
    out: dict[str, Any] = {"serving": action, "endpoint": se.endpoint_name, "version": str(version)}
    if se.app_name:
        principal = w.apps.get(se.app_name).service_principal_client_id
        endpoint_id = _serving_endpoint(w, se.endpoint_name).id
        w.serving_endpoints.update_permissions(endpoint_id, access_control_list=[ServingEndpointAccessControlRequest(
            service_principal_name=principal, permission_level=ServingEndpointPermissionLevel.CAN_QUERY)])
        out["can_query"] = principal
    return out


def _workspace(config: Config):
    from fashion_catalog.indexes.workspace import workspace_client

    return workspace_client(config.vector_search.workspace_url)


def _serving_endpoint(w, name: str):
    from databricks.sdk.errors import NotFound

    try:
        return w.serving_endpoints.get(name)
    except NotFound:
        return None


def _served_version(endpoint, model_name: str) -> str | None:
    entities = (endpoint.config.served_entities if endpoint.config else None) or []
    versions = [e.entity_version for e in entities if e.entity_name == model_name]
    return str(versions[0]) if versions else None


def run_setup(config: Config, spark=None, load_catalog: bool = False, skip: tuple[str, ...] = ()) -> list[dict]:
    """Every step not in ``skip``, in order; returns what each did."""
    from fashion_catalog.personalization.features import build_user_features
    from fashion_catalog.streaming.backfill import backfill
    from fashion_catalog.vectorsearch.lifecycle import create_configured_indexes

    unknown = set(skip) - set(STEPS)
    if unknown:
        raise ConfigError(f"unknown setup steps {sorted(unknown)}; the steps: {', '.join(STEPS)}")
    done: list[dict] = []
    model: dict = {}
    for step in STEPS:
        if step in skip:
            continue
        if step == "tables":
            done.append(prepare_products(spark, config, load_catalog))
        elif step == "model":
            model = register_encoder(config)
            done.append(model)
        elif step == "serving" and not config.serving.endpoint_name:
            done.append({"serving": "skipped (serving.endpoint_name is null)"})
        elif step == "serving":
            # Skipping the model step serves what its alias already points at (a re-run after a failed deploy).
            served = model or served_model(config)
            done.append(ensure_serving_endpoint(config, served["registered_model"], served["version"]))
        elif step == "embeddings":
            done.append({"embeddings": backfill(spark, config)})
        elif step == "indexes" and config.tables.embeddings.name:
            done.append({"indexes": create_configured_indexes(config)})
        elif step == "users":
            done.append({"users": len(build_user_features(spark, config))})
        log.info("setup: %s done", step)
    return done
