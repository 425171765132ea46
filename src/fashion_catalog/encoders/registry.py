"""The MLflow side of the encoder: point MLflow at the configured store, log the pyfunc, register it.

Locally the tracking store and registry are a SQLite file under storage.root
(``clip_multimodal_encoder``); on Databricks the model goes to Unity Catalog
(``main.fashion_demo.clip_multimodal_encoder``). The CLIP folder is logged as
the model's artifact, so loading or serving it needs no hub access.
"""

from __future__ import annotations

import logging
import os
import tempfile

from fashion_catalog.conf import Config
from fashion_catalog.encoders.clip import ModelLoadError
from fashion_catalog.encoders.model_card import read_model_card

log = logging.getLogger(__name__)

SERVING_REQUIREMENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "serving-requirements.txt")


def serving_requirements() -> list[str]:
    """The pinned serving environment (``encoders/serving-requirements.txt``, shipped in the wheel)."""
    with open(SERVING_REQUIREMENTS, encoding="utf-8") as fh:
        return [line.split("#", 1)[0].strip() for line in fh if line.split("#", 1)[0].strip()]


def input_example():
    """A request the served model answers: one text row (an image row is base64 PNG bytes in ``image``)."""
    import pandas as pd

    return pd.DataFrame({"text": ["red party dress"]})


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

    from fashion_catalog.encoders.pyfunc import ARTIFACT_KEY, CLIPMultimodalEncoder, model_code_paths, signature

    with tempfile.TemporaryDirectory(prefix="pyfunc-code-") as staging:
        return mlflow.pyfunc.log_model(
            name="clip_multimodal_encoder",
            python_model=CLIPMultimodalEncoder(),
            artifacts={ARTIFACT_KEY: model_dir},
            code_paths=model_code_paths(staging),
            signature=signature(),
            input_example=input_example(),
            model_config={"precision": config.model.precision, "torch_threads": config.model.torch_threads,
                          "max_bytes": config.images.max_bytes, "max_pixels": config.images.max_pixels},
            pip_requirements=serving_requirements(),
            registered_model_name=registered_name,
        )


def register_model(config: Config, model_dir: str | None = None, registered_name: str | None = None,
                   alias: str | None = None) -> dict:
    """Log and register the encoder and point its alias (``mlflow.alias``, e.g. ``champion``) at the new version.

    Returns run id, model URI, the registered version URI and the alias URI
    (``models:/<name>@<alias>``), which the embedder and the serving endpoint can load. ``model_dir`` (default
    ``model.name_or_path``) is a CLIP folder, or a hub id downloaded first where the hub is reachable.
    """
    model_dir = model_dir or config.model.name_or_path
    with tempfile.TemporaryDirectory() as staged:
        if not os.path.isdir(model_dir):
            source, model_dir = model_dir, _fetch_from_hub(model_dir, staged)
        else:
            source = model_dir
        return _register(config, model_dir, registered_name, alias, source)


def _fetch_from_hub(name: str, out_dir: str) -> str:
    """A hub id saved into ``out_dir`` (save_pretrained) when this machine reaches the hub; else one line."""
    looks_like_path = name.startswith(("/", ".", "~")) or name.count("/") > 1  # a hub id is "org/name"
    if not looks_like_path:
        try:
            from transformers import CLIPModel, CLIPProcessor

            CLIPModel.from_pretrained(name).save_pretrained(out_dir)
            CLIPProcessor.from_pretrained(name).save_pretrained(out_dir)
            return out_dir
        except (OSError, ValueError) as exc:
            reason = f"could not fetch {name!r} from the Hugging Face hub ({exc.__class__.__name__})"
    else:
        reason = f"{name!r} is not a folder"
    raise ModelLoadError(
        f"register_model needs a CLIP folder (save_pretrained) or a hub id this machine can download: {reason}; "
        "stage the folder on a Volume (/Volumes/<catalog>/<schema>/raw/models/...) and pass it as "
        "model.name_or_path (the bundle's var.model) or --model-dir")


def _register(config: Config, model_dir: str, registered_name: str | None, alias: str | None,
              source: str | None = None) -> dict:
    import mlflow

    name = registered_name or config.mlflow.registered_model_name
    setup_mlflow(config)
    card = read_model_card(model_dir)
    with mlflow.start_run(run_name="clip_multimodal_encoder") as run:
        # "source": what was asked for (hub id or folder), so a setup re-run can tell the alias already serves it.
        mlflow.log_params({"source_model": model_dir, "source": source or model_dir, "model_id": config.model.id,
                           "weights": card.get("weights", "unknown"), "dimension": config.model.dimension})
        info = log_encoder_model(config, model_dir, name)
    version = getattr(info, "registered_model_version", None)
    alias = alias if alias is not None else config.mlflow.alias
    if alias and version is not None:
        mlflow.MlflowClient().set_registered_model_alias(name, alias, str(version))
    result = {
        "run_id": run.info.run_id,
        "model_uri": info.model_uri,
        "registered_model": name,
        "version": version,
        "registered_uri": f"models:/{name}/{version}" if version is not None else None,
        "alias": alias or None,
        "alias_uri": f"models:/{name}@{alias}" if alias and version is not None else None,
        "tracking_uri": config.mlflow.tracking_uri,
    }
    log.info("registered %s", result)
    return result
