"""Servers Shouwang starts in-process for the single-process "embedded default".

When no database DSN is configured, :class:`EmbeddedPostgres` runs a PostgreSQL server from
pip-installed binaries; when no MQTT broker is configured, :class:`EmbeddedBroker` runs Mosquitto
(if installed) or the pure-Python amqtt broker.
"""

from shouwang.embedded.broker import EmbeddedBroker, EmbeddedBrokerError
from shouwang.embedded.postgres import EmbeddedPostgres, EmbeddedPostgresError

__all__ = ["EmbeddedBroker", "EmbeddedBrokerError", "EmbeddedPostgres", "EmbeddedPostgresError"]
