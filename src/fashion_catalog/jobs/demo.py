"""Job: the local end-to-end demo -- catalog -> stream -> editor edits -> incremental re-embedding."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    from fashion_catalog.conf.cli import parser, run, setup
    from fashion_catalog.demo.scenario import run_demo

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--fresh", action="store_true", help="delete the demo tables and checkpoint first")
    args = p.parse_args(argv)
    config = setup(args)
    # The page's command repeats the demo's own settings, so it opens the same tables with the same model.
    same = [w for pair in (("--profile", args.profile), ("--config", args.config)) if pair[1] for w in pair]
    same += [w for s in args.set for w in ("--set", s)]
    run(lambda: run_demo(config, fresh=args.fresh, page_args=same), args)


if __name__ == "__main__":
    main()
