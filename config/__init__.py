"""Configuration: typed settings loaded once from YAML plus environment overrides."""

from config.settings import ConfigError, Settings, load

__all__ = ["ConfigError", "Settings", "load"]
