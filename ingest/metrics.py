"""Prometheus metrics of the ingest path (one registry per process)."""

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "FLUSH_SECONDS",
    "MESSAGES",
    "QUARANTINED",
    "QUEUE_DEPTH",
    "READINGS",
    "REJECTS",
    "ROWS_WRITTEN",
]

MESSAGES = Counter("shouwang_ingest_messages_total", "MQTT messages received")
READINGS = Counter("shouwang_ingest_readings_total", "valid readings handed to the durable hop")
REJECTS = Counter("shouwang_ingest_rejects_total", "messages rejected", ["reason"])
ROWS_WRITTEN = Counter("shouwang_store_rows_written_total", "new reading rows committed")
QUEUE_DEPTH = Gauge("shouwang_ingest_queue_depth", "received messages not yet handed on")
FLUSH_SECONDS = Histogram("shouwang_ingest_flush_seconds", "time to make a batch durable",
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
QUARANTINED = Gauge("shouwang_ingest_quarantined_devices", "devices quarantined for flooding")
