"""Job: batch-embed the whole products table (resumable), optionally reusing stored image vectors."""

from __future__ import annotations

# What to do when the source table is missing or empty.
LOAD = "load a catalogue first: `python -m fashion_catalog.jobs.load_catalog` (or check storage.root)"


def main(argv: list[str] | None = None) -> None:
    from fashion_catalog.conf.cli import parser, run, setup
    from fashion_catalog.lakehouse.tables import spark_over_rows
    from fashion_catalog.streaming.backfill import backfill

    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    config = setup(args)

    def job() -> None:
        spark = spark_over_rows(config, config.tables.products, "tables.products", LOAD)
        print(backfill(spark, config))

    run(job, args)


if __name__ == "__main__":
    main()
