"""A private single-node Kafka (KRaft) for fault tests, from the jars scripts/services.sh
caches: its own ports and log dir, so restarting it never touches the shared test broker."""

from __future__ import annotations

import base64
import os
import subprocess
import time
import uuid
from pathlib import Path

from tests.faults.broker import PrivateProcess, free_port

__all__ = ["PrivateKafka"]

_VERSION = os.environ.get("SHOUWANG_KAFKA_VERSION", "4.4.0")
_CACHE = Path(os.environ.get("SHOUWANG_CACHE_DIR", Path.home() / ".cache" / "shouwang"))
_LIBS = _CACHE / f"kafka-{_VERSION}" / "libs"
_STARTED = "Kafka Server started"


class PrivateKafka(PrivateProcess):
    grace_s = 60.0  # a controlled shutdown moves leadership and flushes logs

    def __init__(self, directory: Path) -> None:
        if not (_LIBS.parent / ".complete").exists():
            raise RuntimeError(f"no Kafka jars in {_LIBS}: run `bash scripts/services.sh install`")
        self.directory = directory
        self.port = free_port()
        self._controller_port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self._log = directory / "server.log"
        self._properties = directory / "server.properties"
        self._properties.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self._controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self._controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={directory}/data",
            "num.partitions=2",
            "default.replication.factor=1",
            "min.insync.replicas=1",
            "auto.create.topics.enable=true",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=2",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=2",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
        ]) + "\n")
        (directory / "log4j2.properties").write_text("\n".join([
            "status = warn",
            "appender.file.type = File",
            "appender.file.name = FILE",
            f"appender.file.fileName = {self._log}",
            "appender.file.layout.type = PatternLayout",
            "appender.file.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = INFO",
            "rootLogger.appenderRef.file.ref = FILE",
        ]) + "\n")
        self._format()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self, heap: str) -> list[str]:
        return ["java", f"-Xmx{heap}", "-XX:TieredStopAtLevel=1",
                f"-Dlog4j2.configurationFile={self.directory}/log4j2.properties",
                "-Dlog4j2.shutdownHookEnabled=false", "-cp", f"{_LIBS}/*"]

    def _format(self) -> None:
        # A cluster id is 16 random bytes, base64url without padding; like Kafka's own
        # Uuid.randomUuid, never one starting with "-", which the tool would read as a flag.
        cluster = "-"
        while cluster.startswith("-"):
            cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        subprocess.run([*self._java("128m"), "kafka.tools.StorageTool", "format",
                        "-t", cluster, "-c", str(self._properties)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=120)

    def start(self, timeout_s: float = 90.0) -> None:
        """Start, and wait until the broker logs that it serves (a fresh start each time)."""
        seen = self._log.read_text().count(_STARTED) if self._log.exists() else 0
        self._process = subprocess.Popen(
            [*self._java("384m"), "-XX:+UseSerialGC", "kafka.Kafka", str(self._properties)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while not (self._log.exists() and self._log.read_text().count(_STARTED) > seen):
            if self._process.poll() is not None:
                raise RuntimeError(f"private kafka exited: see {self._log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"private kafka did not start: see {self._log}")
            time.sleep(0.1)

