"""Configuration: one validated object loaded from conf/<profile>.yaml."""

from conf.config import (
    Config,
    ConfigError,
    TableRef,
    load_config,
)

__all__ = ["Config", "ConfigError", "TableRef", "load_config"]
