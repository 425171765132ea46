"""Job: build the user_style_features table from the personas (personalization/data/personas.json)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    from fashion_catalog.conf.cli import parser, setup
    from fashion_catalog.lakehouse.session import get_spark
    from fashion_catalog.personalization.features import build_user_features

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--personas", help="personas JSON (default: personalization/data/personas.json)")
    args = p.parse_args(argv)
    config = setup(args)
    for row in build_user_features(get_spark(config), config, args.personas):
        print(row)


if __name__ == "__main__":
    main()
