"""Job: create the image, text and hybrid Databricks Vector Search Delta Sync indexes and wait until ready.

Self-managed embeddings (``embedding_vector_column``), dimension from model.dimension,
``columns_to_sync`` = every metadata column (so queries can return them), pipeline
type from vector_search.pipeline_type. Auth: DATABRICKS_HOST plus DATABRICKS_TOKEN,
or DATABRICKS_CLIENT_ID / DATABRICKS_CLIENT_SECRET (service principal).
"""

from __future__ import annotations

from conf import Config


def run(config: Config, client=None, timeout_s: float = 3600, poll_s: float = 10) -> dict:
    from app.index.databricks_index import create_indexes, make_client

    ref = config.tables.embeddings
    if not ref.name:
        raise SystemExit("Delta Sync indexes need a Unity Catalog table: use the databricks profile "
                         "(tables.embeddings.name), not a path-based table")
    client = client or make_client(config.vector_search.workspace_url)
    vs = config.vector_search
    return create_indexes(client, vs.endpoint_name, vs.indexes, ref.name, vs.pipeline_type,
                          config.model.dimension, timeout_s, poll_s)


def main(argv: list[str] | None = None) -> None:
    from jobs.cli import parser, setup

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--timeout", type=float, default=3600)
    args = p.parse_args(argv)
    print(run(setup(args), timeout_s=args.timeout))


if __name__ == "__main__":
    main()
