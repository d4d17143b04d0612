"""The duty officers' console: live alerts, device health and sent messages in a browser."""

from console.app import create_app
from console.service import ConsoleError, ConsoleService

__all__ = ["ConsoleError", "ConsoleService", "create_app"]
