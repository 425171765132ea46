"""Configuration: one validated object loaded from conf/<profile>.yaml (the bottom layer: imports nothing above)."""

from conf.config import (
    Config,
    ConfigError,
    TableRef,
    load_config,
    parse_override,
)

__all__ = ["Config", "ConfigError", "TableRef", "load_config", "parse_override"]
