"""Job: load a Kaggle-layout catalog (styles.csv + images/) into the products Delta table."""

from __future__ import annotations

import os


def main(argv: list[str] | None = None) -> None:
    from fashion_catalog.catalog.loader import load_catalog
    from fashion_catalog.catalog.parser import CatalogFormatError
    from fashion_catalog.conf.cli import parser, run, setup
    from fashion_catalog.lakehouse.session import get_spark

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--source-dir", help="catalog folder (default: catalog.source_dir)")
    p.add_argument("--delete-missing", action="store_true", help="delete products absent from the file")
    args = p.parse_args(argv)
    config = setup(args)

    def job() -> None:
        source = args.source_dir or config.catalog_source_dir
        if not os.path.isfile(os.path.join(source, "styles.csv")):
            raise CatalogFormatError(f"no styles.csv in {source} (catalog.source_dir or --source-dir): point it at a "
                                     "folder with styles.csv and images/ (the Kaggle fashion dataset's layout)")
        print(load_catalog(get_spark(config), config, args.source_dir, args.delete_missing))

    run(job, args)


if __name__ == "__main__":
    main()
