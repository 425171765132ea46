"""The MLflow side of the encoder: point MLflow at the configured store, log the pyfunc, register it.

Locally the tracking store and registry are a SQLite file under storage.root
(``clip_multimodal_encoder``); on Databricks the model goes to Unity Catalog
(``main.fashion_demo.clip_multimodal_encoder``). The CLIP folder is logged as
the model's artifact, so loading or serving it needs no hub access.
"""

from __future__ import annotations

import logging
import os

from conf import Config
from encoders.clip import ModelLoadError
from encoders.model_card import read_model_card

log = logging.getLogger(__name__)

PIP_REQUIREMENTS_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "requirements.txt")
_SERVING_PACKAGES = ("torch", "transformers", "pillow", "numpy", "pandas", "onnxruntime", "onnx", "mlflow")


def _pip_requirements() -> list[str]:
    """Pins for the serving environment, taken from requirements.txt (mlflow infers nothing)."""
    reqs: list[str] = []
    if os.path.isfile(PIP_REQUIREMENTS_FILE):
        with open(PIP_REQUIREMENTS_FILE, encoding="utf-8") as fh:
            for line in fh:
                line = line.split("#", 1)[0].strip()
                if line and line.split("==")[0].lower() in _SERVING_PACKAGES:
                    reqs.append(line)
    return reqs or list(_SERVING_PACKAGES)


def setup_mlflow(config: Config) -> None:
    """Point MLflow at the configured tracking store / registry and experiment (created if missing)."""
    import mlflow

    mlflow.set_tracking_uri(config.mlflow.tracking_uri)
    if config.mlflow.registry_uri:
        mlflow.set_registry_uri(config.mlflow.registry_uri)
    if config.mlflow.tracking_uri.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(config.mlflow.tracking_uri[len("sqlite:///"):]), exist_ok=True)
    if mlflow.get_experiment_by_name(config.mlflow.experiment) is None:
        mlflow.create_experiment(config.mlflow.experiment, artifact_location=config.mlflow.artifact_location)
    mlflow.set_experiment(config.mlflow.experiment)


def log_encoder_model(config: Config, model_dir: str, registered_name: str | None = None):
    """Log the CLIP folder as the multimodal pyfunc in the active run (and register it if a name is given)."""
    import mlflow

    from encoders.pyfunc import ARTIFACT_KEY, CLIPMultimodalEncoder, model_code_paths, signature

    return mlflow.pyfunc.log_model(
        name="clip_multimodal_encoder",
        python_model=CLIPMultimodalEncoder(),
        artifacts={ARTIFACT_KEY: model_dir},
        code_paths=model_code_paths(),
        signature=signature(),
        model_config={"precision": config.model.precision, "torch_threads": config.model.torch_threads,
                      "max_bytes": config.images.max_bytes, "max_pixels": config.images.max_pixels},
        pip_requirements=_pip_requirements(),
        registered_model_name=registered_name,
    )


def register_model(config: Config, model_dir: str | None = None, registered_name: str | None = None) -> dict:
    """Log and register the encoder; returns run id, model URI and registered version URI."""
    import mlflow

    model_dir = model_dir or config.model.name_or_path
    if not os.path.isdir(model_dir):
        raise ModelLoadError(
            f"register_model needs a local CLIP folder (save_pretrained), got {model_dir!r}; "
            "pass --model-dir or set model.name_or_path"
        )
    name = registered_name or config.mlflow.registered_model_name
    setup_mlflow(config)
    card = read_model_card(model_dir)
    with mlflow.start_run(run_name="clip_multimodal_encoder") as run:
        mlflow.log_params({"source_model": model_dir, "model_id": config.model.id,
                           "weights": card.get("weights", "unknown"), "dimension": config.model.dimension})
        info = log_encoder_model(config, model_dir, name)
    version = getattr(info, "registered_model_version", None)
    result = {
        "run_id": run.info.run_id,
        "model_uri": info.model_uri,
        "registered_model": name,
        "version": version,
        "registered_uri": f"models:/{name}/{version}" if version is not None else None,
        "tracking_uri": config.mlflow.tracking_uri,
    }
    log.info("registered %s", result)
    return result
