"""Ingest: MQTT telemetry, events and status in; readings to the bus and the store."""

from ingest.decoder import Decoder
from ingest.flood_guard import FloodGuard, QuarantineChange
from ingest.hops import DatabaseHop, DurableHop, KafkaHop
from ingest.mqtt_source import MqttSource, MqttSourceError
from ingest.service import IngestService
from ingest.writer_service import StoreWriterService

__all__ = [
    "DatabaseHop",
    "Decoder",
    "DurableHop",
    "FloodGuard",
    "IngestService",
    "KafkaHop",
    "MqttSource",
    "MqttSourceError",
    "QuarantineChange",
    "StoreWriterService",
]
