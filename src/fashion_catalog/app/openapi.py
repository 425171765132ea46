"""The OpenAPI document states the bounds the configuration sets (``search.max_limit``, label counts)
and the rules that span fields (one of a file or a product id), so it tells clients the truth."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from fashion_catalog.app.models import labels_schema
from fashion_catalog.conf import Config

# Body rules across fields, by (method, path): JSON Schema keywords added to the form's schema.
BODY_RULES = {
    ("post", "/api/v1/classify"): {"oneOf": [{"required": ["file"]}, {"required": ["product_id"]}]},
    ("post", "/api/v1/search/hybrid"): {"anyOf": [{"required": ["query"]}, {"required": ["file"]}]},
}


def _bound(schema: dict, config: Config) -> None:
    se = config.search
    for name, prop in (schema.get("properties") or {}).items():
        if name == "limit":
            for branch in [prop, *prop.get("anyOf", [])]:
                if branch.get("type") == "integer":
                    branch["maximum"] = se.max_limit
        elif name == "labels" and "contentSchema" in prop:
            prop["contentSchema"] = labels_schema(se.max_labels, se.max_label_chars)


def install_openapi(app: FastAPI, config: Config) -> None:
    """Serve an OpenAPI document with the configured bounds filled in."""

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = doc.get("components", {}).get("schemas", {})
        for schema in components.values():
            _bound(schema, config)
        for path, methods in doc.get("paths", {}).items():
            for method, operation in methods.items():
                for param in operation.get("parameters", []):
                    if param.get("name") == "limit":
                        _bound({"properties": {"limit": param["schema"]}}, config)
                rule = BODY_RULES.get((method, path))
                if rule:
                    ref = operation["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
                    components[ref.rsplit("/", 1)[-1]].update(rule)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi
