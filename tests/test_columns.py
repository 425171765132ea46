"""Column expressions built once per process (udfs/columns.py): reused per arguments, kept apart per Spark mode."""

from __future__ import annotations

from pyspark.sql import functions as F

from fashion_catalog.udfs.columns import reusable_columns


def test_built_once_per_arguments_and_per_spark_mode(spark, monkeypatch):
    built = []

    @reusable_columns
    def columns(name: str):
        built.append(name)
        return F.col(name) + F.lit(1)

    first = columns("price")
    assert columns("price") is first and built == ["price"]
    assert columns("year") is not first and built == ["price", "year"]
    # A Connect client process builds Connect columns: never handed a classic one from the cache.
    monkeypatch.setenv("SPARK_CONNECT_MODE_ENABLED", "1")
    connect = columns("price")
    assert connect is not first and built == ["price", "year", "price"]
    assert type(connect).__module__.startswith("pyspark.sql.connect")
    monkeypatch.delenv("SPARK_CONNECT_MODE_ENABLED")
    assert columns("price") is first


def test_cached_expressions_work_in_any_dataframe(spark):
    from fashion_catalog.udfs.description import description_expr

    a = spark.createDataFrame([(1, "Red Shirt", 10.0)], "product_id int, product_display_name string, price double")
    b = spark.createDataFrame([(2, "Blue Shirt", 200.0)], "product_id int, product_display_name string, price double")
    for c in ("master_category", "sub_category", "article_type", "base_color", "gender", "season", "usage"):
        a, b = a.withColumn(c, F.lit(None).cast("string")), b.withColumn(c, F.lit(None).cast("string"))
    assert description_expr() is description_expr()
    assert a.select(description_expr()).first()[0] == "Red Shirt, affordable price"
    assert b.select(description_expr()).first()[0] == "Blue Shirt, luxury price"
