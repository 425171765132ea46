"""Job: train a catalog-tuned CLIP on (product image, caption) pairs read from the products table.

Usage: python -m fashion_catalog.jobs.train_clip [--set catalog.source_dir=...] [--max-minutes N] [--out DIR]
"""

from __future__ import annotations

import json
from dataclasses import asdict

# What to do when the source table is missing or empty.
LOAD = "load a catalogue first: `python -m fashion_catalog.jobs.load_catalog` (or check storage.root)"


def main(argv: list[str] | None = None) -> None:
    from fashion_catalog.conf.cli import parser, run, setup
    from fashion_catalog.lakehouse.session import get_spark
    from fashion_catalog.lakehouse.tables import require_rows
    from fashion_catalog.training.trainer import train_clip

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--out", help="output folder (default: training.output_dir)")
    p.add_argument("--max-minutes", type=float, help="wall-clock budget (default: training.max_minutes)")
    p.add_argument("--epochs", type=int, help="epochs (default: training.epochs)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log the run to MLflow")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    config = setup(args)

    def job() -> None:
        require_rows(config.tables.products, "tables.products", LOAD)
        result = train_clip(get_spark(config), config, output_dir=args.out, max_minutes=args.max_minutes,
                            epochs=args.epochs, log_to_mlflow=not args.no_mlflow, progress=not args.no_progress)
        print(json.dumps(asdict(result), indent=2))
        print(f"model: {result.output_dir} (weights: trained, {result.base}); use it with "
              f"--set model.name_or_path={result.output_dir}")

    run(job, args)


if __name__ == "__main__":
    main()
