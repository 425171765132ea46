"""Job: log the multimodal CLIP encoder as an MLflow pyfunc model and register it (encoders.registry)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    from fashion_catalog.conf.cli import parser, run, setup
    from fashion_catalog.encoders.registry import register_model

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--model-dir", help="CLIP folder to package (default: model.name_or_path)")
    p.add_argument("--name", help="registered model name (default: mlflow.registered_model_name)")
    p.add_argument("--alias", help="alias to point at the new version (default: mlflow.alias)")
    args = p.parse_args(argv)
    config = setup(args)
    run(lambda: print(register_model(config, args.model_dir, args.name, args.alias)), args)


if __name__ == "__main__":
    main()
