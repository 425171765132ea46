"""Job: retrieval quality of a CLIP on the catalog's TEST split, against a random-weights floor.

Usage: python -m fashion_catalog.jobs.evaluate [--set model.name_or_path=DIR] [--out DIR] [--min-support 3]
"""

from __future__ import annotations

import json


def main(argv: list[str] | None = None) -> None:
    from fashion_catalog.conf.cli import parser, setup
    from fashion_catalog.evaluation.retrieval import evaluate
    from fashion_catalog.lakehouse.session import get_spark

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--out", help="report folder (default: <storage.root>/reports/evaluation)")
    p.add_argument("--min-support", type=int, default=3, help="least test products a query's labels must have")
    args = p.parse_args(argv)
    config = setup(args)
    report = evaluate(get_spark(config), config, args.out, args.min_support)
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
