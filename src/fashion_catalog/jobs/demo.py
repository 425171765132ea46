"""Job: the local end-to-end demo -- catalog -> stream -> editor edits -> incremental re-embedding."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    from fashion_catalog.conf.cli import parser, setup
    from fashion_catalog.demo.scenario import run_demo

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--fresh", action="store_true", help="delete the demo tables and checkpoint first")
    args = p.parse_args(argv)
    run_demo(setup(args), fresh=args.fresh)


if __name__ == "__main__":
    main()
