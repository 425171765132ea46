"""Job: create the image, text and hybrid Databricks Vector Search Delta Sync indexes and wait until ready.

Self-managed embeddings (``embedding_vector_column``), dimension from model.dimension,
``columns_to_sync`` = every metadata column (so queries can return them), pipeline
type from vector_search.pipeline_type. Auth: DATABRICKS_HOST plus DATABRICKS_TOKEN,
or DATABRICKS_CLIENT_ID / DATABRICKS_CLIENT_SECRET (service principal).
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    from fashion_catalog.conf.cli import parser, run, setup
    from fashion_catalog.vectorsearch.lifecycle import create_configured_indexes

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--timeout", type=float, default=3600)
    args = p.parse_args(argv)
    config = setup(args)
    run(lambda: print(create_configured_indexes(config, timeout_s=args.timeout)), args)


if __name__ == "__main__":
    main()
