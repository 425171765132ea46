"""Shared command-line handling for the jobs: profile, config file, overrides, logging."""

from __future__ import annotations

import argparse
import logging
import sys

from fashion_catalog.conf import Config, ConfigError, load_config
from fashion_catalog.conf.config import parse_override


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every job takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--profile", help="conf/<profile>.yaml (default: $FASHION_CONF_PROFILE or local)")
    p.add_argument("--config", help="path to a YAML config file instead of a profile")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set model.precision=bf16 (repeatable)")
    p.add_argument("--log-level", default="INFO")
    return p


def setup(args: argparse.Namespace) -> Config:
    """Configure logging and load the config, exiting with a clear message on a bad config."""
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        overrides = dict(parse_override(o) for o in args.set)
        return load_config(profile=args.profile, path=args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
