"""Shared command-line handling for the jobs: profile, config file, overrides, logging."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from fashion_catalog.conf import ActionableError, Config, ConfigError, load_config
from fashion_catalog.conf.config import parse_override


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every job takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--profile", help="conf/<profile>.yaml (default: $FASHION_CONF_PROFILE or local)")
    p.add_argument("--config", help="path to a YAML config file instead of a profile")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set model.precision=bf16 (repeatable)")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (one line without)")
    return p


def run(job: Callable[[], object], args: argparse.Namespace) -> None:
    """Run a job's body: an expected failure (an ActionableError) is one line on stderr and exit status 2; with
    ``--debug`` its traceback too. Anything else is a bug and keeps its traceback."""
    try:
        job()
    except ActionableError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


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
