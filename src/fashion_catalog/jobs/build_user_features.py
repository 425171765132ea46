"""Job: build the user_style_features table from the personas (personalization/data/personas.json)."""

from __future__ import annotations

# What to do when the source table is missing or empty.
EMB = "run the embedder first: `python -m fashion_catalog.jobs.stream` (or check storage.root)"


def main(argv: list[str] | None = None) -> None:
    from fashion_catalog.conf.cli import parser, run, setup
    from fashion_catalog.lakehouse.tables import spark_over_rows
    from fashion_catalog.personalization.features import build_user_features

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--personas", help="personas JSON (default: personalization/data/personas.json)")
    args = p.parse_args(argv)
    config = setup(args)

    def job() -> None:
        spark = spark_over_rows(config, config.tables.embeddings, "tables.embeddings", EMB)
        for row in build_user_features(spark, config, args.personas):
            print(row)

    run(job, args)


if __name__ == "__main__":
    main()
