"""Job: batch-embed the whole products table (resumable), optionally reusing stored image vectors."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    from fashion_catalog.conf.cli import parser, setup
    from fashion_catalog.lakehouse.session import get_spark
    from fashion_catalog.streaming.backfill import backfill

    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    config = setup(args)
    print(backfill(get_spark(config), config))


if __name__ == "__main__":
    main()
