"""Pick the encoder behind ``model.name_or_path``: a CLIP folder/hub id, a registered MLflow model, or an endpoint.

All three give the same interface (``encode_texts``, ``encode_images``), so the
Spark UDFs and the search service do not care which one runs. Each is built once
per process; :class:`EncoderSpec` is what a Spark worker receives to build its own.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from fashion_catalog.encoders.clip import get_encoder

_CACHE: dict[tuple, object] = {}
_LOCK = threading.Lock()


def is_mlflow_uri(name_or_path: str) -> bool:
    return name_or_path.startswith(("models:/", "runs:/"))


def is_endpoint_url(name_or_path: str) -> bool:
    return name_or_path.startswith(("http://", "https://"))


@dataclass(frozen=True)
class EncoderSpec:
    """What a worker needs to build its encoder (small and picklable)."""

    name_or_path: str
    precision: str
    torch_threads: int
    dimension: int
    text_batch_size: int
    image_batch_size: int
    mlflow_tracking_uri: str | None = None
    mlflow_registry_uri: str | None = None
    serving: object | None = None
    device: str = "cpu"

    @classmethod
    def from_config(cls, config) -> EncoderSpec:
        """The spec of ``config.model`` (a :class:`conf.Config`)."""
        model = config.model
        endpoint = is_endpoint_url(model.name_or_path)
        # An endpoint batches on its own terms (serving.batch_size), not the local model's.
        return cls(model.name_or_path, model.precision, model.torch_threads, model.dimension,
                   config.serving.batch_size if endpoint else model.text_batch_size,
                   config.serving.batch_size if endpoint else model.image_batch_size,
                   config.mlflow.tracking_uri, config.mlflow.registry_uri, config.serving, model.device)

    def encoder(self):
        """The process-wide encoder for this spec (built on first use)."""
        return load_encoder(self)


def load_mlflow_encoder(uri: str, tracking_uri: str | None, registry_uri: str | None,
                        precision: str, torch_threads: int | None):
    """Load a registered CLIPMultimodalEncoder pyfunc and return its in-process encoder."""
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    if registry_uri:
        mlflow.set_registry_uri(registry_uri)
    model = mlflow.pyfunc.load_model(uri, model_config={"precision": precision, "torch_threads": torch_threads})
    return model.unwrap_python_model().encoder


def load_encoder(spec: EncoderSpec):
    """The process-wide encoder for an :class:`EncoderSpec`."""
    if not (is_mlflow_uri(spec.name_or_path) or is_endpoint_url(spec.name_or_path)):
        return get_encoder(spec.name_or_path, spec.precision, spec.torch_threads, spec.dimension, spec.device)
    key = (spec.name_or_path, spec.precision, spec.torch_threads, spec.mlflow_tracking_uri)
    with _LOCK:
        if key not in _CACHE:
            if is_mlflow_uri(spec.name_or_path):
                _CACHE[key] = load_mlflow_encoder(spec.name_or_path, spec.mlflow_tracking_uri,
                                                  spec.mlflow_registry_uri, spec.precision, spec.torch_threads)
            else:
                from fashion_catalog.encoders.auth import endpoint_auth
                from fashion_catalog.encoders.endpoint import EndpointEncoder

                s = spec.serving
                _CACHE[key] = EndpointEncoder(
                    spec.name_or_path, batch_size=s.batch_size, max_concurrency=s.max_concurrency,
                    timeout_s=s.timeout_s, max_retries=s.max_retries, backoff_base_s=s.backoff_base_s,
                    max_request_bytes=s.max_request_bytes,
                    auth=endpoint_auth(spec.name_or_path, s.auth, s.token_env))
        return _CACHE[key]
