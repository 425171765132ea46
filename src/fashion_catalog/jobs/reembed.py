"""Job: re-embed rows whose embedding_model differs from the configured model (or, --failed, whose encode failed)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    from fashion_catalog.conf.cli import parser, setup
    from fashion_catalog.lakehouse.session import get_spark
    from fashion_catalog.streaming.backfill import reembed

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--failed", action="store_true",
                   help="re-encode rows whose last encode failed (model or endpoint error), whatever their attempts")
    args = p.parse_args(argv)
    config = setup(args)
    print(reembed(get_spark(config), config, failed_only=args.failed))


if __name__ == "__main__":
    main()
