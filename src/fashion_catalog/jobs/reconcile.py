"""Job: remove multimodal rows whose product no longer exists (deleted while no stream was running)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    from fashion_catalog.conf.cli import parser, setup
    from fashion_catalog.lakehouse.session import get_spark
    from fashion_catalog.streaming.reconcile import reconcile

    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    config = setup(args)
    print(reconcile(get_spark(config), config))


if __name__ == "__main__":
    main()
