"""Job: re-embed rows whose embedding_model differs from the configured model."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    from conf.cli import parser, setup
    from lakehouse.session import get_spark
    from streaming.backfill import reembed

    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    config = setup(args)
    print(reembed(get_spark(config), config))


if __name__ == "__main__":
    main()
