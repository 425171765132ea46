"""Job: re-embed rows whose embedding_model differs from the configured model (or, --failed, whose encode failed)."""

from __future__ import annotations

# What to do when the source table is missing or empty.
EMB = "run the embedder first: `python -m fashion_catalog.jobs.stream` (or check storage.root)"


def main(argv: list[str] | None = None) -> None:
    from fashion_catalog.conf.cli import parser, run, setup
    from fashion_catalog.lakehouse.tables import spark_over_rows
    from fashion_catalog.streaming.backfill import reembed

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--failed", action="store_true",
                   help="re-encode rows whose last encode failed (model or endpoint error), whatever their attempts")
    args = p.parse_args(argv)
    config = setup(args)

    def job() -> None:
        spark = spark_over_rows(config, config.tables.embeddings, "tables.embeddings", EMB)
        print(reembed(spark, config, failed_only=args.failed))

    run(job, args)


if __name__ == "__main__":
    main()
