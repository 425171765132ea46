"""Configuration: one validated object loaded from conf/<profile>.yaml (the bottom layer: imports nothing above)."""

from fashion_catalog.conf.config import (
    CONF_DIR,
    ActionableError,
    Config,
    ConfigError,
    TableRef,
    load_config,
    parse_override,
)

__all__ = ["CONF_DIR", "ActionableError", "Config", "ConfigError", "TableRef", "load_config", "parse_override"]
