"""Job: prepare a workspace after `bundle deploy`: tables, encoder, serving endpoint, embeddings, indexes, users.

Every step is harmless to repeat (deploy.setup). Run it with ``databricks bundle run setup -t dev``.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    from fashion_catalog.conf.cli import parser, run, setup
    from fashion_catalog.deploy.setup import STEPS, run_setup
    from fashion_catalog.lakehouse.session import get_spark

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--load-catalog", choices=("true", "false"), default="false",
                   help="true: load products from catalog.source_dir (the raw Volume); false: use the existing table")
    p.add_argument("--skip", action="append", default=[], choices=STEPS, help="a step to leave out (repeatable)")
    args = p.parse_args(argv)
    config = setup(args)

    def job() -> None:
        for step in run_setup(config, get_spark(config), args.load_catalog == "true", tuple(args.skip)):
            print(step)

    run(job, args)


if __name__ == "__main__":
    main()
