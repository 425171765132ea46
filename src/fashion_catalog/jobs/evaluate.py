"""Job: retrieval quality of a CLIP on the catalog's TEST split, against a random-weights floor.

Usage: python -m fashion_catalog.jobs.evaluate [--set model.name_or_path=DIR] [--out DIR] [--min-support 3]
"""

from __future__ import annotations

import json

# What to do when the source table is missing or empty.
LOAD = "load a catalogue first: `python -m fashion_catalog.jobs.load_catalog` (or check storage.root)"


def main(argv: list[str] | None = None) -> None:
    from fashion_catalog.conf.cli import parser, run, setup
    from fashion_catalog.evaluation.retrieval import evaluate
    from fashion_catalog.lakehouse.session import get_spark
    from fashion_catalog.lakehouse.tables import require_rows

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--out", help="report folder (default: <storage.root>/reports/evaluation)")
    p.add_argument("--min-support", type=int, default=3, help="least test products a query's labels must have")
    args = p.parse_args(argv)
    config = setup(args)

    def job() -> None:
        require_rows(config.tables.products, "tables.products", LOAD)
        report = evaluate(get_spark(config), config, args.out, args.min_support)
        print(json.dumps(report, indent=2, default=str))

    run(job, args)


if __name__ == "__main__":
    main()
