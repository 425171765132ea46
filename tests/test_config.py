"""Unit tests: configuration loading and validation."""

from __future__ import annotations

import pytest

from fashion_catalog.conf import ConfigError, load_config
from fashion_catalog.conf.config import parse_override


def test_local_profile_resolves_paths_under_storage_root(tmp_path):
    config = load_config("local", base_dir=tmp_path)
    assert config.profile == "local"
    assert config.tables.products.path == str(tmp_path / "data" / "delta" / "products")
    assert config.tables.embeddings.sql == f"delta.`{tmp_path / 'data' / 'delta' / 'product_embeddings_multimodal'}`"
    assert config.model.name_or_path == str(tmp_path / "data" / "models" / "demo-clip")
    assert config.hybrid_text_weight == 0.5
    assert config.stream.trigger == "availableNow"


def test_databricks_profile_uses_unity_catalog_names(tmp_path):
    config = load_config("databricks", base_dir=tmp_path)
    assert config.tables.products.name == "main.fashion_demo.products"
    assert config.tables.embeddings.sql == "main.fashion_demo.product_embeddings_multimodal"
    assert config.model.name_or_path == "openai/clip-vit-base-patch32"
    assert config.spark.master is None
    assert config.stream.trigger == "processingTime"


def test_overrides_apply_dotted_keys_including_spark_conf(tmp_path):
    config = load_config("local", base_dir=tmp_path, overrides=dict([
        parse_override("model.precision=bf16"),
        parse_override("embedding.hybrid_text_weight=0.7"),
        parse_override("spark.conf.spark.sql.shuffle.partitions=8"),
    ]))
    assert config.model.precision == "bf16"
    assert config.hybrid_text_weight == 0.7
    assert config.spark.conf["spark.sql.shuffle.partitions"] == "8"
    assert "spark" not in config.spark.conf, "a dotted spark.conf key must not leave nested junk"


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("model.precision", "fp8", "model.precision must be one of"),
        ("embedding.hybrid_text_weight", 1.5, "hybrid_text_weight must be a number in [0, 1]"),
        ("stream.trigger", "once", "stream.trigger must be one of"),
        ("model.text_batch_size", 0, "model.text_batch_size must be an integer >= 1"),
        ("stream.starting_version", -3, "stream.starting_version must be null or an integer >= 0"),
        ("tables.products", {"name": "a.b.c", "path": "x"}, "tables.products must be"),
        ("tables.products", {"name": "bad name; drop"}, "is not a valid table name"),
        ("tables.embeddings", None, "missing required setting tables.embeddings"),
        ("model.id", None, "missing required setting model.id"),
        # Spark refuses a task resource amount that is neither whole nor at most 0.5 (TaskResourceRequest).
        ("model.encode_task_gpus", 0.75, "model.encode_task_gpus must be 0, a fraction <= 0.5 or a whole number"),
        ("model.encode_task_gpus", -1, "model.encode_task_gpus must be 0, a fraction <= 0.5 or a whole number"),
    ],
)
def test_invalid_values_raise_clear_errors(tmp_path, key, value, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config("local", base_dir=tmp_path, overrides={key: value})


@pytest.mark.parametrize("gpus", [0, 0.25, 0.5, 1, 2])
def test_encoding_tasks_take_whole_gpus_or_a_share_spark_accepts(tmp_path, gpus):
    assert load_config("local", base_dir=tmp_path, overrides={"model.encode_task_gpus": gpus}).model.encode_task_gpus \
        == float(gpus)


def test_unknown_profile_lists_known_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown profile 'prod'.*databricks.*local"):
        load_config("prod", base_dir=tmp_path)


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("model.precision")


def test_one_namespace_pair_moves_every_databricks_name():
    config = load_config("databricks", overrides={"namespace.catalog": "dev", "namespace.schema": "fashion_jdoe"})
    assert config.tables.embeddings.name == "dev.fashion_jdoe.product_embeddings_multimodal"
    assert config.mlflow.registered_model_name == "dev.fashion_jdoe.clip_multimodal_encoder"
    assert config.stream.checkpoint == "/Volumes/dev/fashion_jdoe/embedder/checkpoints/embedder"
    assert config.images.allowed_roots == ["/Volumes/dev/fashion_jdoe/raw"]
    assert config.vector_search.indexes["text"] == "dev.fashion_jdoe.vs_text_search"
    with pytest.raises(ConfigError, match=r"namespace\.schema is not set"):
        load_config("databricks", overrides={"namespace.schema": None})
