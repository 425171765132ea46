"""Job: remove multimodal rows whose product no longer exists (deleted while no stream was running)."""

from __future__ import annotations

# What to do when the source table is missing or empty.
LOAD = "load a catalogue first: `python -m fashion_catalog.jobs.load_catalog` (or check storage.root)"


def main(argv: list[str] | None = None) -> None:
    from fashion_catalog.conf.cli import parser, run, setup
    from fashion_catalog.lakehouse.tables import spark_over_rows
    from fashion_catalog.streaming.reconcile import reconcile

    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    config = setup(args)

    def job() -> None:
        # An empty or missing products table would delete every embedding: refused.
        spark = spark_over_rows(config, config.tables.products, "tables.products", LOAD)
        print(reconcile(spark, config))

    run(job, args)


if __name__ == "__main__":
    main()
