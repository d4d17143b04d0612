"""The bus: one small interface, in-process or Kafka."""

from shouwang.bus.base import TOPICS, Bus, BusError, Consumer, Message, RebalanceListener
from shouwang.bus.memory import MemoryBus

__all__ = ["TOPICS", "Bus", "BusError", "Consumer", "MemoryBus", "Message", "RebalanceListener"]
