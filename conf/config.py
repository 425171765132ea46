"""Load and validate the single configuration object.

Profiles are YAML files next to this module (``local``, ``databricks``) or any
YAML path. Values can be overridden with dotted keys (``model.precision=bf16``),
which is how the jobs' ``--set`` flag and the tests adjust a profile.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

CONF_DIR = Path(__file__).resolve().parent
PROFILE_ENV = "FASHION_CONF_PROFILE"
_TABLE_NAME_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*){0,2}$")
_URI_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


class ConfigError(ValueError):
    """The configuration is missing a value or holds an invalid one."""


@dataclass(frozen=True)
class TableRef:
    """A Delta table addressed by catalog name or by storage path (exactly one)."""

    name: str | None = None
    path: str | None = None

    @property
    def sql(self) -> str:
        """How SQL refers to the table: its name or delta.`path`."""
        return self.name if self.name else f"delta.`{self.path}`"

    def __str__(self) -> str:
        return self.name or str(self.path)


@dataclass(frozen=True)
class SparkSettings:
    master: str | None
    app_name: str
    delta_package: str | None
    conf: dict[str, str]


@dataclass(frozen=True)
class Tables:
    products: TableRef
    embeddings: TableRef
    quarantine: TableRef
    image_embeddings: TableRef | None
    user_features: TableRef | None = None


@dataclass(frozen=True)
class ModelSettings:
    name_or_path: str
    id: str
    dimension: int
    precision: str
    torch_threads: int
    text_batch_size: int
    image_batch_size: int
    encode_partitions: int


@dataclass(frozen=True)
class ImageSettings:
    base_dir: str | None
    max_bytes: int
    max_pixels: int


@dataclass(frozen=True)
class StreamSettings:
    checkpoint: str
    trigger: str
    processing_time: str
    starting_version: int | None
    max_files_per_trigger: int
    app_id: str
    arrow_batch_size: int
    local_merge_source_max_rows: int


@dataclass(frozen=True)
class MlflowSettings:
    tracking_uri: str
    registry_uri: str | None
    artifact_location: str | None
    experiment: str
    registered_model_name: str


@dataclass(frozen=True)
class ServingSettings:
    token_env: str | None
    batch_size: int
    max_concurrency: int
    timeout_s: float
    max_retries: int
    backoff_base_s: float


@dataclass(frozen=True)
class SearchSettings:
    backend: str
    approximate_threshold: int
    approximate_index: str
    ivf_nprobe: int
    ef_search: int
    exact_max_candidates: int
    sync_interval_s: float
    default_limit: int
    max_limit: int
    max_upload_bytes: int
    host: str
    port: int


@dataclass(frozen=True)
class VectorSearchSettings:
    endpoint_name: str
    pipeline_type: str
    workspace_url: str | None
    indexes: dict[str, str]


@dataclass(frozen=True)
class TrainingSettings:
    """jobs.train_clip: contrastive CLIP training on the catalog's (image, description) pairs."""

    output_dir: str
    base_model: str | None  # hub id or CLIP folder to fine-tune; None: the small CLIP from scratch
    init_shape: str
    seed: int
    split_fractions: tuple[float, float, float]
    epochs: int
    max_minutes: float
    demo_max_minutes: float
    batch_size: int
    learning_rate: float
    weight_decay: float
    warmup_steps: int
    precision: str
    image_label_loss_weight: float


@dataclass(frozen=True)
class Config:
    """Everything the jobs need; build it with :func:`load_config`."""

    profile: str
    root: str
    spark: SparkSettings
    tables: Tables
    catalog_source_dir: str
    model: ModelSettings
    hybrid_text_weight: float
    images: ImageSettings
    stream: StreamSettings
    backfill_chunk_rows: int
    mlflow: MlflowSettings
    serving: ServingSettings
    search: SearchSettings
    vector_search: VectorSearchSettings
    training: TrainingSettings
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)


PRECISIONS = ("fp32", "bf16", "int8")
TRIGGERS = ("availableNow", "processingTime")


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    # spark.conf keys contain dots themselves: "spark.conf.spark.sql.x=1" sets one key.
    if parts[0] == "spark" and len(parts) > 2 and parts[1] == "conf":
        spark = data.setdefault("spark", {})
        if not isinstance(spark.get("conf"), dict):
            spark["conf"] = {}
        spark["conf"][".".join(parts[2:])] = value
        return
    node = data
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one ``dotted.key=value`` override; the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value) if value.strip() else None


def _resolve_path(root: Path, value: str) -> str:
    if value.startswith("/") or _URI_RE.match(value):
        return value
    return str((root / value).resolve())


def _resolve_sqlite(root: Path, uri: str) -> str:
    """sqlite:///relative/x.db resolves under storage.root (sqlite:////abs stays)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        return prefix + str((root / uri[len(prefix):]).resolve())
    return uri


def _require(section: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(section, Mapping) or key not in section or section[key] is None:
        raise ConfigError(f"missing required setting {where}.{key}")
    return section[key]


def _int(section: Mapping[str, Any], key: str, where: str, minimum: int = 1) -> int:
    value = _require(section, key, where)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}.{key} must be an integer >= {minimum}, got {value!r}")
    return value


def _choice(section: Mapping[str, Any], key: str, where: str, allowed: tuple[str, ...]) -> str:
    value = _require(section, key, where)
    if value not in allowed:
        raise ConfigError(f"{where}.{key} must be one of {allowed}, got {value!r}")
    return value


def _table(raw: Any, key: str, root: Path, optional: bool = False) -> TableRef | None:
    where = f"tables.{key}"
    if raw is None:
        if optional:
            return None
        raise ConfigError(f"missing required setting {where}")
    if not isinstance(raw, Mapping) or (("name" in raw) == ("path" in raw)):
        raise ConfigError(f"{where} must be {{name: catalog.schema.table}} or {{path: ...}}, got {raw!r}")
    if "name" in raw:
        name = str(raw["name"])
        if not _TABLE_NAME_RE.match(name):
            raise ConfigError(f"{where}.name {name!r} is not a valid table name")
        return TableRef(name=name)
    return TableRef(path=_resolve_path(root, str(raw["path"])))


def load_config(
    profile: str | None = None,
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> Config:
    """Load, override and validate a configuration profile.

    ``profile`` names ``conf/<profile>.yaml`` (default: $FASHION_CONF_PROFILE or
    ``local``); ``path`` reads any YAML file instead. Relative storage paths resolve
    against ``storage.root``, itself relative to ``base_dir`` (default: cwd).
    """
    if path is None:
        profile = profile or os.environ.get(PROFILE_ENV, "local")
        path = CONF_DIR / f"{profile}.yaml"
        if not path.exists():
            known = sorted(p.stem for p in CONF_DIR.glob("*.yaml"))
            raise ConfigError(f"unknown profile {profile!r}; known profiles: {known}")
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a YAML mapping")
    data = copy.deepcopy(data)
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    return _validate(data, Path(base_dir) if base_dir else Path.cwd())


def _validate(data: dict[str, Any], base_dir: Path) -> Config:
    storage = data.get("storage") or {}
    root = Path(_resolve_path(base_dir, str(_require(storage, "root", "storage"))))

    spark_raw = data.get("spark") or {}
    spark = SparkSettings(
        master=spark_raw.get("master"),
        app_name=str(spark_raw.get("app_name") or "fashion-multimodal-embedder"),
        delta_package=spark_raw.get("delta_package"),
        conf={str(k): str(v) for k, v in (spark_raw.get("conf") or {}).items()},
    )

    tables_raw = data.get("tables") or {}
    tables = Tables(
        products=_table(tables_raw.get("products"), "products", root),
        embeddings=_table(tables_raw.get("embeddings"), "embeddings", root),
        quarantine=_table(tables_raw.get("quarantine"), "quarantine", root),
        image_embeddings=_table(tables_raw.get("image_embeddings"), "image_embeddings", root, True),
        user_features=_table(tables_raw.get("user_features"), "user_features", root, True),
    )

    m = data.get("model") or {}
    precision = _require(m, "precision", "model")
    if precision not in PRECISIONS:
        raise ConfigError(f"model.precision must be one of {PRECISIONS}, got {precision!r}")
    name_or_path = str(_require(m, "name_or_path", "model"))
    # "./x" or "../x" is a local folder under storage.root; "org/name" is a hub id.
    if name_or_path.startswith(("./", "../")):
        name_or_path = _resolve_path(root, name_or_path)
    model = ModelSettings(
        name_or_path=name_or_path,
        id=str(_require(m, "id", "model")),
        dimension=_int(m, "dimension", "model"),
        precision=precision,
        torch_threads=_int(m, "torch_threads", "model"),
        text_batch_size=_int(m, "text_batch_size", "model"),
        image_batch_size=_int(m, "image_batch_size", "model"),
        encode_partitions=_int(m, "encode_partitions", "model"),
    )

    emb = data.get("embedding") or {}
    weight = _require(emb, "hybrid_text_weight", "embedding")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
        raise ConfigError(f"embedding.hybrid_text_weight must be a number in [0, 1], got {weight!r}")

    img = data.get("images") or {}
    images = ImageSettings(
        base_dir=_resolve_path(root, str(img["base_dir"])) if img.get("base_dir") else None,
        max_bytes=_int(img, "max_bytes", "images"),
        max_pixels=_int(img, "max_pixels", "images"),
    )

    s = data.get("stream") or {}
    trigger = _require(s, "trigger", "stream")
    if trigger not in TRIGGERS:
        raise ConfigError(f"stream.trigger must be one of {TRIGGERS}, got {trigger!r}")
    starting_version = s.get("starting_version")
    if starting_version is not None and (
        isinstance(starting_version, bool) or not isinstance(starting_version, int) or starting_version < 0
    ):
        raise ConfigError(f"stream.starting_version must be null or an integer >= 0, got {starting_version!r}")
    stream = StreamSettings(
        checkpoint=_resolve_path(root, str(_require(s, "checkpoint", "stream"))),
        trigger=trigger,
        processing_time=str(s.get("processing_time") or "5 seconds"),
        starting_version=starting_version,
        max_files_per_trigger=_int(s, "max_files_per_trigger", "stream"),
        app_id=str(_require(s, "app_id", "stream")),
        arrow_batch_size=_int(s, "arrow_batch_size", "stream"),
        local_merge_source_max_rows=_int(s, "local_merge_source_max_rows", "stream", minimum=0),
    )

    ml = data.get("mlflow") or {}
    mlflow_settings = MlflowSettings(
        tracking_uri=_resolve_sqlite(root, str(_require(ml, "tracking_uri", "mlflow"))),
        registry_uri=_resolve_sqlite(root, str(ml["registry_uri"])) if ml.get("registry_uri") else None,
        artifact_location=_resolve_path(root, str(ml["artifact_location"])) if ml.get("artifact_location") else None,
        experiment=str(_require(ml, "experiment", "mlflow")),
        registered_model_name=str(_require(ml, "registered_model_name", "mlflow")),
    )
    sv = data.get("serving") or {}
    serving = ServingSettings(
        token_env=sv.get("token_env"),
        batch_size=_int(sv, "batch_size", "serving"),
        max_concurrency=_int(sv, "max_concurrency", "serving"),
        timeout_s=float(_require(sv, "timeout_s", "serving")),
        max_retries=_int(sv, "max_retries", "serving", minimum=0),
        backoff_base_s=float(_require(sv, "backoff_base_s", "serving")),
    )

    se = data.get("search") or {}
    backend = _require(se, "backend", "search")
    if backend not in ("local", "databricks"):
        raise ConfigError(f"search.backend must be 'local' or 'databricks', got {backend!r}")
    search = SearchSettings(
        backend=backend,
        approximate_threshold=_int(se, "approximate_threshold", "search"),
        approximate_index=_choice(se, "approximate_index", "search", ("ivf_flat", "hnsw")),
        ivf_nprobe=_int(se, "ivf_nprobe", "search"),
        ef_search=_int(se, "ef_search", "search"),
        exact_max_candidates=_int(se, "exact_max_candidates", "search"),
        sync_interval_s=float(_require(se, "sync_interval_s", "search")),
        default_limit=_int(se, "default_limit", "search"),
        max_limit=_int(se, "max_limit", "search"),
        max_upload_bytes=_int(se, "max_upload_bytes", "search"),
        host=str(se.get("host") or "127.0.0.1"),
        port=_int(se, "port", "search"),
    )

    vs = data.get("vector_search") or {}
    pipeline = _require(vs, "pipeline_type", "vector_search")
    if pipeline not in ("TRIGGERED", "CONTINUOUS"):
        raise ConfigError(f"vector_search.pipeline_type must be TRIGGERED or CONTINUOUS, got {pipeline!r}")
    vs_indexes = _require(vs, "indexes", "vector_search")
    if not isinstance(vs_indexes, dict) or set(vs_indexes) != {"image", "text", "hybrid"}:
        raise ConfigError("vector_search.indexes must name the image, text and hybrid indexes")
    vector_search = VectorSearchSettings(
        endpoint_name=str(_require(vs, "endpoint_name", "vector_search")),
        pipeline_type=pipeline,
        workspace_url=vs.get("workspace_url"),
        indexes={k: str(v) for k, v in vs_indexes.items()},
    )

    tr = data.get("training") or {}
    fractions = tuple(float(f) for f in _require(tr, "split_fractions", "training"))
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ConfigError(f"training.split_fractions must be 3 numbers >= 0 summing to 1, got {fractions}")
    base_model = tr.get("base_model")
    training = TrainingSettings(
        output_dir=_resolve_path(root, str(_require(tr, "output_dir", "training"))),
        base_model=_resolve_path(root, str(base_model)) if base_model and str(base_model).startswith("./")
        else base_model,
        init_shape=_choice(tr, "init_shape", "training", ("tiny", "small", "vit-b-32")),
        seed=_int(tr, "seed", "training", minimum=0),
        split_fractions=fractions,  # type: ignore[arg-type]
        epochs=_int(tr, "epochs", "training"),
        max_minutes=float(_require(tr, "max_minutes", "training")),
        demo_max_minutes=float(_require(tr, "demo_max_minutes", "training")),
        batch_size=_int(tr, "batch_size", "training", minimum=2),
        learning_rate=float(_require(tr, "learning_rate", "training")),
        weight_decay=float(_require(tr, "weight_decay", "training")),
        warmup_steps=_int(tr, "warmup_steps", "training", minimum=0),
        precision=_choice(tr, "precision", "training", ("fp32", "bf16")),
        image_label_loss_weight=float(tr.get("image_label_loss_weight") or 0.0),
    )

    cat = data.get("catalog") or {}
    return Config(
        profile=str(data.get("profile") or "custom"),
        root=str(root),
        spark=spark,
        tables=tables,
        catalog_source_dir=_resolve_path(root, str(_require(cat, "source_dir", "catalog"))),
        model=model,
        hybrid_text_weight=float(weight),
        images=images,
        stream=stream,
        backfill_chunk_rows=_int(data.get("backfill") or {}, "chunk_rows", "backfill"),
        mlflow=mlflow_settings,
        serving=serving,
        search=search,
        vector_search=vector_search,
        training=training,
        raw=data,
    )
