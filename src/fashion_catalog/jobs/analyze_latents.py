"""Job: latent-feature analysis of the multimodal table, as a catalog-QA report (no Spark needed).

Usage: python -m fashion_catalog.jobs.analyze_latents [--set model.name_or_path=DIR] [--out DIR] [--top 20]
"""

from __future__ import annotations

import json


def main(argv: list[str] | None = None) -> None:
    from fashion_catalog.conf.cli import parser, run, setup
    from fashion_catalog.evaluation.latents import analyze

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--out", help="report folder (default: <storage.root>/reports/latents)")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--duplicate-threshold", type=float, default=0.995)
    p.add_argument("--clusters", type=int, default=20)
    args = p.parse_args(argv)
    config = setup(args)

    def job() -> None:
        report = analyze(config, args.out, args.top, args.duplicate_threshold, args.clusters)
        print(json.dumps(report, indent=2, default=str))

    run(job, args)


if __name__ == "__main__":
    main()
