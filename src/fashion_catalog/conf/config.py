"""Load and validate the single configuration object: one pydantic model per YAML section.

Profiles are YAML files next to this module (``local``, ``databricks``) or any
YAML path. Values can be overridden with dotted keys (``model.precision=bf16``),
which is how the jobs' ``--set`` flag and the tests adjust a profile. Every
error names the dotted key it is about; unknown keys are errors too, so a typo
never silently falls back to a default.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import annotated_types
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from fashion_catalog.conf.precisions import PRECISION_NAMES, device_error

CONF_DIR = Path(__file__).resolve().parent
PROFILE_ENV = "FASHION_CONF_PROFILE"
_TABLE_NAME_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*){0,2}$")
_URI_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")

TRIGGERS = ("availableNow", "processingTime")


class ActionableError(Exception):
    """An error whose message says what went wrong and what to do: the jobs and the service print it as one line
    on stderr and exit (a traceback only with ``--debug``). Every expected failure at start-up derives from it."""


class ConfigError(ActionableError, ValueError):
    """The configuration is missing a value or holds an invalid one."""


# -- value types with messages that say what is expected ---------------------------------------
def _int_at_least(minimum: int):
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"must be an integer >= {minimum}, got {value!r}")
        return value

    return check


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number, got {value!r}")
    return float(value)


def _non_negative(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"must be a number >= 0, got {value!r}")
    return float(value)


def _unit_interval(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"must be a number in [0, 1], got {value!r}")
    return float(value)


Count = Annotated[int, BeforeValidator(_int_at_least(1)), annotated_types.Ge(1)]
NonNegative = Annotated[int, BeforeValidator(_int_at_least(0)), annotated_types.Ge(0)]
Number = Annotated[float, BeforeValidator(_number)]
Fraction = Annotated[float, BeforeValidator(_unit_interval), annotated_types.Interval(ge=0, le=1)]


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ValueError(f"must be a port number in [0, 65535], got {value!r}")
    return value


Port = Annotated[int, BeforeValidator(_port), annotated_types.Interval(ge=0, le=65535)]


class Section(BaseModel):
    """A YAML section: unknown keys are errors (a misspelt key never falls back to a default)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class TableRef(Section):
    """A Delta table addressed by catalog name or by storage path (exactly one)."""

    name: str | None = None
    path: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_of(cls, raw: Any) -> Any:
        if not isinstance(raw, Mapping) or (("name" in raw) == ("path" in raw)):
            raise ValueError(f"must be {{name: catalog.schema.table}} or {{path: ...}}, got {raw!r}")
        if "name" in raw and not _TABLE_NAME_RE.match(str(raw["name"])):
            raise ValueError(f"name {raw['name']!r} is not a valid table name")
        return {k: str(v) for k, v in raw.items()}

    @property
    def sql(self) -> str:
        """How SQL refers to the table: its name or delta.`path`."""
        return self.name if self.name else f"delta.`{self.path}`"

    def __str__(self) -> str:
        return self.name or str(self.path)


class Namespace(Section):
    """The Unity Catalog catalog and schema that ``${namespace.catalog}``/``${namespace.schema}`` stand for.

    A profile writes its table names, Volumes paths and registered model with these two tokens, so one
    pair of ``--set`` (the bundle's ``catalog``/``schema`` variables) moves every one of them together.
    """

    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True)
    catalog: str | None = Field(None, description="Unity Catalog catalog: replaces ${namespace.catalog} in the "
                                                  "profile's strings")
    schema_name: str | None = Field(None, alias="schema", description="Unity Catalog schema: replaces "
                                                                      "${namespace.schema} in the profile's strings")


_NAMESPACE_TOKEN = re.compile(r"\$\{namespace\.(catalog|schema)\}")


def expand_namespace(data: Any, namespace: Mapping[str, Any] | None) -> Any:
    """``data`` with every ``${namespace.catalog}``/``${namespace.schema}`` replaced by the section's value."""
    if isinstance(data, dict):
        return {k: expand_namespace(v, namespace) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_namespace(v, namespace) for v in data]
    if not isinstance(data, str) or "${namespace." not in data:
        return data

    def value(match: re.Match) -> str:
        found = (namespace or {}).get(match.group(1))
        if not found:
            raise ConfigError(f"{data!r} uses ${{namespace.{match.group(1)}}} but namespace.{match.group(1)} is "
                              f"not set; pass --set namespace.{match.group(1)}=...")
        return str(found)

    return _NAMESPACE_TOKEN.sub(value, data)


class StorageSettings(Section):
    root: str = Field(description="Folder relative paths resolve against (itself relative to the working dir)")


class SparkSettings(Section):
    remote: str | None = Field(None, description="Spark Connect URL (sc://host:port); wins over master")
    master: str | None = Field(None, description="local[2], spark://host:7077, ...; null: the cluster's session")
    app_name: str = "fashion-multimodal-embedder"
    delta_package: str | None = Field(None, description="Maven coordinates of Delta's jars (local runs)")
    conf: dict[str, str] = Field(default_factory=dict, description="extra Spark settings")

    @field_validator("conf", mode="before")
    @classmethod
    def _as_strings(cls, value: Any) -> Any:
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else value


class Tables(Section):
    products: TableRef
    embeddings: TableRef
    quarantine: TableRef
    image_embeddings: TableRef | None = Field(
        None, description="existing (product_id, image_embedding, embedding_model) table the backfill reuses")
    user_features: TableRef | None = None


class CatalogSettings(Section):
    source_dir: str = Field(description="Kaggle layout: styles.csv + images/<id>.jpg")


class ModelSettings(Section):
    name_or_path: str = Field(description="hub id, CLIP folder (save_pretrained), models:/ URI or endpoint URL")
    id: str = Field(description="written to embedding_model")
    dimension: Count
    # The allowed values are the back-ends of conf/precisions.py (one registry) and auto.
    precision: Literal[PRECISION_NAMES] = Field(  # type: ignore[valid-type]
        description="fp32 reference; bf16 autocast (CPU or GPU); int8 ONNX Runtime (CPU); fp16 (GPU only); "
                    "openvino-bf16 / openvino-int8 (CPU; int8 calibrated with NNCF); auto: the fastest path on this "
                    "machine whose vectors keep cosine >= 0.999 to fp32 on the probe set (timed at load, cached)")
    device: Literal["cpu", "cuda"] = Field("cpu", description="where the local CLIP runs (cuda: the encoding "
                                                              "process's GPU; fp16/bf16 autocast there)")
    torch_threads: Count
    text_batch_size: Count
    image_batch_size: Count
    encode_partitions: Count = Field(description="partitions the encoders run in; x torch_threads ~ cores")
    # Stage-level scheduling (Spark >= 3.4 standalone, which Databricks' cluster manager is; 3.5.1 YARN/K8s): only
    # the encoding stages ask for this many GPUs per task, every other stage runs at spark.task.resource.gpu.amount
    # (a fraction, so hashing, joins and the MERGE run one task per core beside them).
    encode_task_gpus: float = Field(0.0, description="GPUs each Spark encoding task takes (1: one model per GPU; "
                                                     "0: no resource profile, the cluster's task default)")

    @field_validator("encode_task_gpus", mode="before")
    @classmethod
    def _gpu_amount(cls, value: Any) -> Any:
        # Spark's own rule for a task resource amount: a whole number, or a fraction of at most 0.5
        # (pyspark.resource.TaskResourceRequest); checked here so a bad value fails at start, not at the first batch.
        amount = _number(value)
        if amount < 0 or (amount > 0.5 and amount != int(amount)):
            raise ValueError(f"must be 0, a fraction <= 0.5 or a whole number of GPUs, got {value!r}")
        return amount

    @model_validator(mode="after")
    def _precision_fits_device(self) -> ModelSettings:
        problem = device_error(self.precision, self.device)
        if problem:
            raise ValueError(problem)
        return self


class EmbeddingSettings(Section):
    hybrid_text_weight: Fraction = Field(description="w in normalize(w*text + (1-w)*image)")


class MlflowSettings(Section):
    tracking_uri: str
    registry_uri: str | None = None
    artifact_location: str | None = None
    experiment: str
    registered_model_name: str
    alias: str | None = Field("champion", description="alias register_model points at the new version "
                              "(models:/<name>@<alias>); null: none")


class ServingSettings(Section):
    auth: Literal["auto", "databricks", "token_env", "none"] = Field(
        "auto", description="auto: none for loopback URLs, else the Databricks SDK's unified auth (PAT, OAuth "
                            "M2M, native); token_env: the bearer token in token_env")
    token_env: str | None = Field(None, description="environment variable holding the endpoint's bearer token")
    batch_size: Count
    max_request_bytes: Count = Field(15_000_000, description="request size bound (Model Serving caps at 16 MB)")
    max_concurrency: Count
    timeout_s: Number
    max_retries: NonNegative
    backoff_base_s: Number
    # The Model Serving endpoint the setup job creates (or points at each newly registered version) on
    # Databricks; the App encodes queries through it (app/main.py, $FASHION_SERVING_ENDPOINT).
    endpoint_name: str | None = Field(None, description="Model Serving endpoint of the registered encoder "
                                                        "(jobs.setup creates it); null: none")
    workload_size: Literal["Small", "Medium", "Large"] = "Small"
    scale_to_zero: bool = True
    app_name: str | None = Field(None, description="Databricks App whose service principal may query the "
                                                   "endpoint (jobs.setup grants CAN_QUERY); null: none")


class ImageSettings(Section):
    base_dir: str | None = Field(None, description="the image root: the loader stores image_path relative to it "
                                                   "(a data folder can move) and a relative image_path resolves "
                                                   "against it; null: catalog.source_dir")
    allowed_roots: list[str] | None = Field(
        None, description="folders images may be read and served from (links and .. resolved first); "
                          "null: catalog.source_dir")
    max_bytes: Count
    max_pixels: Count


class StreamSettings(Section):
    checkpoint: str
    trigger: Literal["availableNow", "processingTime"]
    processing_time: str = "5 seconds"
    starting_version: int | None = None
    max_files_per_trigger: Count
    app_id: str
    arrow_batch_size: Count
    local_merge_source_max_rows: NonNegative
    max_encode_attempts: Count = Field(3, description="a row whose encode failed (model or endpoint error) is "
                                                      "re-planned until it failed this many times in a row")
    small_batch_max_rows: NonNegative = Field(
        64, description="micro-batches of at most this many change rows (an editor's edits) are planned and "
                        "encoded in the process that runs the batch, with no Spark job for the model (0: never)")
    max_rows_per_file: Count = Field(
        1000, description="large batches write the embeddings table in files of at most this many rows, "
                          "ordered by product_id, so a MERGE or a lookup of a few products reads a few small "
                          "files (file skipping on product_id statistics) instead of every big one")
    batch_retries: NonNegative = Field(
        3, description="a batch that fails as a whole (a concurrent writer's commit, a lost executor) is planned "
                       "and run again this many times, with exponential backoff, before the stream stops")
    retry_backoff_s: Number = Field(1.0, description="seconds before the first retry of a batch (doubling after)")
    tiny_merge: Literal["auto", "delta-rs", "spark"] = Field(
        "auto", description="who merges a tiny batch: delta-rs (tens of ms, a table on this machine's file system), "
                            "spark (a Spark MERGE of the rows, any table) or auto (delta-rs where it can, else spark)")
    tiny_batch_torch_threads: Count = Field(
        1, description="torch threads of the encoder that runs tiny batches and the fast lane in the stream "
                       "job's process: one row needs no second thread, and a second thread waits for a core "
                       "the JVM holds (2-vCPU box, one busy core: one text 8 ms at p95 with 1 thread, 65 ms "
                       "with 2)")
    fast_lane: bool = Field(False, description="processingTime streams on tables on this machine's file system: "
                                               "a thread applies each new products commit of at most "
                                               "small_batch_max_rows change rows at once, with no Spark call, "
                                               "before the stream's trigger gets to it (the stream still plans "
                                               "every commit and writes what the lane did not); it starts "
                                               "before Spark and catches up from the checkpoint")
    fast_lane_poll_s: Number = Field(0.02, description="the fast lane checks the products table's _delta_log "
                                                       "folder for a new commit this often (seconds)")
    warm_up: bool = Field(True, description="processingTime streams: beside the first trigger, load the encoder, "
                                            "run one text and one image through it, and run the tiny-batch road "
                                            "on a scratch table (the real table sees nothing), so the first edit "
                                            "after a start is fast")

    @field_validator("starting_version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"must be null or an integer >= 0, got {value!r}")
        return value


class SearchSettings(Section):
    backend: Literal["local", "databricks"]
    approximate_threshold: Count
    approximate_index: Literal["ivf_flat", "hnsw"]
    ivf_nprobe: Count
    ef_search: Count
    exact_max_candidates: Count
    sync_interval_s: Number
    watch_poll_s: float = Field(0.02, ge=0, description="local backend: how often the service checks the "
                                "embeddings table's _delta_log folder for a commit, and syncs at once when one "
                                "landed (0: only every sync_interval_s)")
    default_limit: Count
    max_limit: Count
    max_upload_bytes: Count
    max_form_bytes: Count = Field(65_536, description="bytes a request may carry besides its upload (form fields, "
                                                      "multipart framing); the body bound is max_upload_bytes + this")
    max_json_bytes: Count = Field(65_536, description="bytes a JSON request body may have (uploads are multipart)")
    max_upload_pixels: Count = Field(16_000_000, description="pixels an uploaded photo may have once decoded "
                                                             "(catalog images: images.max_pixels)")
    max_concurrent_decodes: Count = Field(2, description="uploaded photos decoded and encoded at once; more wait")
    limit_concurrency: Count = Field(64, description="connections and tasks the server takes at once (503 above)")
    header_timeout_s: Number = Field(10.0, description="seconds a client has to send a request's headers")
    body_timeout_s: Number = Field(30.0, description="seconds a client has to send a request's body, once the "
                                                     "headers are in")
    stream_stale_after_s: NonNegative = Field(
        120, description="/health says degraded when the products table is ahead of what the stream has read "
                         "and the stream has committed no batch for this long (local backend)")
    max_labels: Count = Field(100, description="candidate labels one /classify request may name")
    max_label_chars: Count = Field(100, description="characters in one candidate label")
    batch_queries: bool = Field(False, description="one worker encodes concurrent queries together (see "
                                                   "encoders.batching); false: each request encodes on its own "
                                                   "thread (faster when the stream shares the cores: bench.load_test)")
    max_query_batch: Count = Field(32, description="queries encoded in one forward pass at most")
    default_mode: Literal["vector", "keyword", "fused"] = Field(
        "fused", description="text search without mode or index: vector (CLIP in one index), keyword (BM25) "
                             "or fused (reciprocal rank fusion of keyword and vector indexes); the evaluation "
                             "of natural-language queries chose fused (README, 'Search that understands shoppers')")
    understand: bool = Field(True, description="read price and gender phrases as filters, brands, known colours and "
                                               "types and the query rules (occasions, seasons, ages, needs) as "
                                               "boosts, and apply the synonyms (a request's 'understand' wins)")
    fusion_weights: dict[Literal["keyword", "text", "image", "hybrid", "boosted"], Annotated[float, BeforeValidator(
        _non_negative)]] = Field({"keyword": 3.0, "text": 1.0, "image": 1.0, "hybrid": 0.0, "boosted": 2.0},
                                 description="weight of each retriever in fused mode (0 or missing leaves it out); "
                                             "keyword 3: on the tuning queries, 3 to 5 beat equal weights by "
                                             "0.04-0.06 P@10; boosted: the text index searched with the query's "
                                             "boosts as filters, so products with every reading are candidates; "
                                             "2 and boost_weight 3 were best on the tuning queries "
                                             "(docs/search.md, 'Search that understands shoppers')")
    fusion_k: NonNegative = Field(60, description="the RRF constant: score = sum weight / (k + rank)")
    fusion_candidates: Count = Field(100, description="results each retriever hands to the fusion")
    boosted_candidates: Count = Field(30, description="results the boosted retriever hands to the fusion (each has "
                                                      "every boost, so a few times the page fills it; each costs a "
                                                      "row read)")
    nothing_close_below: Number | None = Field(
        None, description="fused text search: with no keyword hit and no vector cosine at or above this, the "
                          "answer says nothing came close; null: never said. Per model: `jobs.evaluate` reports "
                          "the floor to set (docs/search.md, 'Nothing close')")
    boost_weight: Number = Field(3.0, description="a result with a boosted value (brand, colour, type, rule reading) "
                                                  "gains this many top ranks' worth of RRF score per boosted column "
                                                  "(weight / (k + 1))")
    synonyms_file: str | None = Field("synonyms.txt", description="shopper synonyms (Solr-style lines); relative "
                                                                  "to conf/; null: none")
    rules_file: str | None = Field("query_rules.txt", description="query rules: occasions, seasons, ages and needs "
                                                                  "read as catalogue labels (search/rules.py); "
                                                                  "relative to conf/; null: none")
    brand_min_products: Count = Field(3, description="a display name's leading words are read as a brand in queries "
                                                     "when at least this many products start with them")
    examples: list[Annotated[str, annotated_types.MinLen(1), annotated_types.MaxLen(200)]] = Field(
        ["red dress under 100", "black jeans for men", "white sports shoes", "brown watch for women", "party bag"],
        description="example searches the page offers on its first screen")
    host: str = "127.0.0.1"
    port: Port = Field(description="port the service listens on (0: a free one, printed at start)")

    @model_validator(mode="after")
    def _limits(self) -> SearchSettings:
        if self.default_limit > self.max_limit:
            raise ValueError(f"default_limit {self.default_limit} is above max_limit {self.max_limit}")
        if not any(self.fusion_weights.values()):
            raise ValueError("fusion_weights: at least one retriever needs a weight above 0")
        return self


class VectorSearchSettings(Section):
    endpoint_name: str
    endpoint_type: Literal["STANDARD", "STORAGE_OPTIMIZED"] = "STANDARD"
    pipeline_type: Literal["TRIGGERED", "CONTINUOUS"]
    sync_from_stream: bool = Field(False, description="TRIGGERED indexes: the stream calls sync() after batches "
                                                      "that wrote (rate-limited, in the background)")
    min_sync_interval_s: Number = Field(60.0, description="at most one sync of the indexes per this many seconds")
    workspace_url: str | None = Field(None, description="null: $DATABRICKS_HOST")
    warehouse_id: str | None = Field(None, description="SQL warehouse the service reads facets and user "
                                                       "features through (search.backend: databricks)")
    indexes: dict[Literal["image", "text", "hybrid"], str]

    @model_validator(mode="after")
    def _storage_optimized_is_triggered(self) -> VectorSearchSettings:
        """Storage-optimized endpoints sync TRIGGERED pipelines only (the endpoint-type comparison in
        https://docs.databricks.com/aws/en/vector-search/vector-search-endpoints): CONTINUOUS is turned into
        TRIGGERED with a warning rather than failing at index creation."""
        if self.endpoint_type == "STORAGE_OPTIMIZED" and self.pipeline_type != "TRIGGERED":
            import logging

            logging.getLogger(__name__).warning(
                "vector_search.pipeline_type: STORAGE_OPTIMIZED endpoints take TRIGGERED pipelines only; "
                "using TRIGGERED (the stream syncs the indexes after its writes)")
            self.pipeline_type = "TRIGGERED"
            self.sync_from_stream = True
        return self

    @field_validator("indexes")
    @classmethod
    def _all_three(cls, value: dict) -> dict:
        if set(value) != {"image", "text", "hybrid"}:
            raise ValueError("must name the image, text and hybrid indexes")
        return value


class TrainingSettings(Section):
    """training.trainer (jobs.train_clip): contrastive CLIP training on the catalog's (image, caption) pairs."""

    output_dir: str
    base_model: str | None = Field(None, description="hub id or CLIP folder to fine-tune; null: from scratch")
    init_shape: Literal["tiny", "small", "vit-b-32"]
    seed: NonNegative
    split_fractions: tuple[float, float, float]
    epochs: Count
    max_minutes: Number
    demo_max_minutes: Number
    batch_size: Annotated[int, BeforeValidator(_int_at_least(2)), annotated_types.Ge(2)]
    learning_rate: Number
    weight_decay: Number
    warmup_steps: NonNegative
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: time fp32 and bf16 steps at start (cached per machine) and train with the faster "
                            "stable one; bf16: CPU autocast (slow without native bf16: AVX-512 BF16 or AMX)")
    prefetch_batches: NonNegative = Field(2, description="batches made ahead on the input thread while the model "
                                                         "steps (0: made between steps)")
    image_label_loss_weight: Number = 0.0

    @field_validator("split_fractions", mode="before")
    @classmethod
    def _fractions(cls, value: Any) -> Any:
        try:
            fractions = tuple(float(f) for f in value)
        except (TypeError, ValueError):
            fractions = ()
        if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
            raise ValueError(f"must be 3 numbers >= 0 summing to 1, got {value!r}")
        return fractions


class BackfillSettings(Section):
    chunk_rows: Count


class Config(Section):
    """Everything the jobs and the service need; build it with :func:`load_config`."""

    profile: str = "custom"
    namespace: Namespace = Field(default_factory=Namespace)
    storage: StorageSettings
    spark: SparkSettings = Field(default_factory=SparkSettings)
    tables: Tables
    catalog: CatalogSettings
    model: ModelSettings
    embedding: EmbeddingSettings
    mlflow: MlflowSettings
    serving: ServingSettings
    images: ImageSettings
    stream: StreamSettings
    search: SearchSettings
    vector_search: VectorSearchSettings
    training: TrainingSettings
    backfill: BackfillSettings

    @model_validator(mode="after")
    def _resolve_paths(self, info: ValidationInfo) -> Config:
        """Relative storage paths resolve against storage.root (itself against the base dir)."""
        base = Path((info.context or {}).get("base_dir") or Path.cwd())
        root = Path(_resolve_path(base, self.storage.root))
        self.storage.root = str(root)
        for ref in (self.tables.products, self.tables.embeddings, self.tables.quarantine,
                    self.tables.image_embeddings, self.tables.user_features):
            if ref is not None and ref.path is not None:
                ref.path = _resolve_path(root, ref.path)
        self.catalog.source_dir = _resolve_path(root, self.catalog.source_dir)
        # "./x" or "../x" is a local folder under storage.root; "org/name" is a hub id.
        if self.model.name_or_path.startswith(("./", "../")):
            self.model.name_or_path = _resolve_path(root, self.model.name_or_path)
        if self.images.base_dir:
            self.images.base_dir = _resolve_path(root, self.images.base_dir)
        if self.images.allowed_roots is not None:
            self.images.allowed_roots = [_resolve_path(root, r) for r in self.images.allowed_roots]
        self.stream.checkpoint = _resolve_path(root, self.stream.checkpoint)
        self.mlflow.tracking_uri = _resolve_sqlite(root, self.mlflow.tracking_uri)
        if self.mlflow.registry_uri:
            self.mlflow.registry_uri = _resolve_sqlite(root, self.mlflow.registry_uri)
        if self.mlflow.artifact_location:
            self.mlflow.artifact_location = _resolve_path(root, self.mlflow.artifact_location)
        self.training.output_dir = _resolve_path(root, self.training.output_dir)
        if self.training.base_model and self.training.base_model.startswith("./"):
            self.training.base_model = _resolve_path(root, self.training.base_model)
        _check_image_roots(self.images.allowed_roots, self.catalog.source_dir)
        return self

    # Shortcuts for the settings nearly every module reads.
    @property
    def root(self) -> str:
        """storage.root, resolved."""
        return self.storage.root

    @property
    def hybrid_text_weight(self) -> float:
        """embedding.hybrid_text_weight."""
        return self.embedding.hybrid_text_weight

    @property
    def catalog_source_dir(self) -> str:
        """catalog.source_dir, resolved."""
        return self.catalog.source_dir

    @property
    def image_root(self) -> str:
        """Where relative image paths live: images.base_dir, else catalog.source_dir."""
        return self.images.base_dir or self.catalog.source_dir

    @property
    def backfill_chunk_rows(self) -> int:
        """backfill.chunk_rows."""
        return self.backfill.chunk_rows


def _check_image_roots(roots: list[str] | None, source_dir: str) -> None:
    """Image roots must name folders: none at all, or the file system's root, would let a product's
    image_path reach any file the process can read (the service serves what is under a root)."""
    if roots is not None and not roots:
        raise ValueError("images.allowed_roots is an empty list, which would allow every path: name the image "
                         "folders, or set null for catalog.source_dir")
    for root in roots if roots is not None else [source_dir]:
        if os.path.realpath(root) == os.path.realpath(os.sep):
            setting = "images.allowed_roots" if roots is not None else "images.allowed_roots (null: catalog.source_dir)"
            raise ValueError(f"{setting} allows the whole file system ({root!r}): name the image folders")


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


def _field_names(loc: tuple) -> list[str]:
    """The settings known at the parent of ``loc`` (for 'unknown setting' errors)."""
    model: type[BaseModel] | None = Config
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if model else None
        annotation = getattr(field, "annotation", None)
        model = next((a for a in (annotation, *getattr(annotation, "__args__", ())) if isinstance(a, type)
                      and issubclass(a, BaseModel)), None)
    return sorted(model.model_fields) if model else []


def _message(error: dict) -> str:
    """One pydantic error as a sentence that names the dotted key."""
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    key = ".".join(str(p) for p in loc) or "<config>"
    kind = error["type"]
    if kind == "missing" or (kind != "extra_forbidden" and "input" in error and error["input"] is None):
        return f"missing required setting {key}"
    if kind == "extra_forbidden":
        return f"unknown setting {key}; known here: {', '.join(_field_names(loc))}"
    if kind == "value_error":
        return f"{key} {error['ctx']['error']}"
    if kind in ("literal_error", "enum"):
        return f"{key} must be one of {error['ctx']['expected']}, got {error.get('input')!r}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"{key} must be a mapping of settings, got {error.get('input')!r}"
    return f"{key}: {error['msg']} (got {error.get('input')!r})"


def validate_config(data: dict[str, Any], base_dir: str | os.PathLike[str] | None = None) -> Config:
    """Validate a configuration mapping; raises :class:`ConfigError` naming every bad key."""
    try:
        return Config.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        messages = [_message(e) for e in exc.errors(include_url=False)]
        raise ConfigError("; ".join(messages)) from None


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
    namespace = data.get("namespace") if isinstance(data.get("namespace"), Mapping) else None
    data = {k: v if k == "namespace" else expand_namespace(v, namespace) for k, v in data.items()}
    return validate_config(data, base_dir)
