"""Job: the stream on a local multi-process Spark standalone cluster (master + workers on 127.0.0.1)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    from fashion_catalog.conf.cli import parser, run, setup
    from fashion_catalog.demo.cluster import run_cluster_demo

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2, help="standalone workers to start (one core each)")
    args = p.parse_args(argv)
    config = setup(args)

    def job() -> None:
        result = run_cluster_demo(config, workers=args.workers)
        if not (result["encoding_on_executors"] and result["embedded"] == result["products"]):
            raise SystemExit(f"cluster check failed: {result}")

    run(job, args)


if __name__ == "__main__":
    main()
