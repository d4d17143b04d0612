"""MQTT credentials and ACL entries for devices and services, in Mosquitto's own file formats.

Each device gets its own username (its device id) and a random password; its ACL entry lets
it publish to ``{topic_root}/{site}/{device_id}/{telemetry,event,status}`` and nothing else,
so the topic's device id and site are guaranteed by the broker before ingest reads them.
Explicit per-user entries are written instead of one ``pattern write .../+/%u/#`` line: a
pattern can bind the device id (``%u``) but not its site, and Mosquitto applies patterns to
every user, so a pattern would let a device publish into any site's tree.

Passwords are stored as Mosquitto 2.0's ``$7$`` hashes (PBKDF2-HMAC-SHA512, the format
``mosquitto_passwd`` writes), so no binary is needed to provision. Both files are rewritten
atomically with mode 0600; the broker rereads them on SIGHUP. The plain password is returned
once and stored nowhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from config.settings import Settings
from shouwang.private_file import write_private

__all__ = [
    "DEFAULT_ITERATIONS",
    "Account",
    "AccountRole",
    "CredentialFiles",
    "ProvisionError",
    "Provisioned",
    "acl_entry",
    "hash_password",
    "provision_account",
    "verify_password",
]

log = logging.getLogger(__name__)

# Mosquitto's own default is 101; the broker reads the count from each hash, so more is
# compatible. 1000 keeps a reconnect storm of a few thousand devices to seconds of CPU.
DEFAULT_ITERATIONS = 1000
_SALT_BYTES = 12  # what mosquitto_passwd uses
_HASH_BYTES = 64  # SHA-512 output
# A topic segment and a password-file key: no '/', '+', '#' (topic syntax) and no ':'
# (Mosquitto splits password lines at the first colon).
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_CHANNELS = ("telemetry", "event", "status")


class ProvisionError(ValueError):
    """The account cannot be provisioned as asked; the message says why."""


class AccountRole(StrEnum):
    DEVICE = "device"
    INGEST = "ingest"        # reads every device's topics (shared subscriptions included)
    SIMULATOR = "simulator"  # publishes as any device: drills and load tests only


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    username: str
    role: AccountRole = AccountRole.DEVICE
    site: str | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.username):
            raise ProvisionError(f"username {self.username!r} must match {_NAME.pattern} "
                                 "(a topic segment without ':')")
        if self.role is AccountRole.DEVICE:
            if self.site is None or not _NAME.match(self.site):
                raise ProvisionError(f"device {self.username!r} needs a site matching "
                                     f"{_NAME.pattern}, got {self.site!r}")
        elif self.site is not None:
            raise ProvisionError(f"a {self.role.value} account is not bound to a site")


@dataclass(frozen=True, slots=True, kw_only=True)
class Provisioned:
    account: Account
    password: str
    acl: tuple[str, ...]


def hash_password(password: str, *, salt: bytes | None = None,
                  iterations: int = DEFAULT_ITERATIONS) -> str:
    """Mosquitto 2.0 ``$7$`` hash: ``$7$<iterations>$<b64 salt>$<b64 PBKDF2-SHA512>``."""
    if iterations < 1:
        raise ProvisionError("iterations must be positive")
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, _HASH_BYTES)
    return (f"$7${iterations}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


def verify_password(encoded: str, password: str) -> bool:
    """Check a password against a ``$7$`` (PBKDF2) or ``$6$`` (salted SHA-512) hash."""
    parts = encoded.split("$")
    try:
        if len(parts) == 5 and parts[1] == "7":
            iterations, salt = int(parts[2]), base64.b64decode(parts[3], validate=True)
            expected = base64.b64decode(parts[4], validate=True)
            actual = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations,
                                         len(expected))
        elif len(parts) == 4 and parts[1] == "6":
            salt = base64.b64decode(parts[2], validate=True)
            expected = base64.b64decode(parts[3], validate=True)
            actual = hashlib.sha512(password.encode() + salt).digest()
        else:
            return False
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def acl_entry(account: Account, *, topic_root: str = "shouwang/v1") -> tuple[str, ...]:
    """The ``user`` block of Mosquitto's acl_file for one account."""
    root = topic_root.strip("/")
    if account.role is AccountRole.DEVICE:
        base = f"{root}/{account.site}/{account.username}"
        rules = tuple(f"topic write {base}/{channel}" for channel in _CHANNELS)
    elif account.role is AccountRole.INGEST:
        rules = (f"topic read {root}/#",)
    else:
        rules = (f"topic write {root}/#",)
    return (f"# {account.role.value}" + (f" on site {account.site}" if account.site else ""),
            f"user {account.username}", *rules)


def _acl_blocks(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """Split an acl_file into its header (before any ``user``) and one block per user."""
    header: list[str] = []
    blocks: dict[str, list[str]] = {}
    current: list[str] = header
    pending_comments: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("user "):
            current = blocks.setdefault(stripped[5:].strip(), [])
            current.extend(pending_comments)
            pending_comments = []
            current.append(stripped)
        elif stripped.startswith("#") and current is not header:
            pending_comments.append(line)  # a comment before the next user belongs to it
        elif stripped:
            current.extend(pending_comments)
            pending_comments = []
            current.append(line)
    (header if current is header else current).extend(pending_comments)
    return header, blocks


class CredentialFiles:
    """Mosquitto's password_file and acl_file for one broker."""

    def __init__(self, password_file: Path, acl_file: Path, *,
                 topic_root: str = "shouwang/v1", iterations: int = DEFAULT_ITERATIONS) -> None:
        self._password_file = password_file
        self._acl_file = acl_file
        self._topic_root = topic_root
        self._iterations = iterations

    def provision(self, account: Account, *, password: str | None = None) -> Provisioned:
        """Create or replace the account's password and ACL entry; return the password."""
        password = password if password is not None else secrets.token_urlsafe(24)
        if not password:
            raise ProvisionError("the password must not be empty")
        entry = acl_entry(account, topic_root=self._topic_root)
        self._write_password(account.username, hash_password(password,
                                                             iterations=self._iterations))
        self._write_acl(account.username, entry)
        log.info("provisioned mqtt account username=%s role=%s site=%s", account.username,
                 account.role.value, account.site)
        return Provisioned(account=account, password=password, acl=entry[1:])

    def _write_password(self, username: str, encoded: str) -> None:
        lines = (self._password_file.read_text(encoding="utf-8").splitlines()
                 if self._password_file.exists() else [])
        kept = [line for line in lines if line.partition(":")[0] != username]
        write_private(self._password_file, "\n".join([*kept, f"{username}:{encoded}"]) + "\n")

    def _write_acl(self, username: str, entry: tuple[str, ...]) -> None:
        text = (self._acl_file.read_text(encoding="utf-8") if self._acl_file.exists()
                else "# Mosquitto acl_file written by `shouwang devices provision`.\n"
                     "# Nobody may read or write anything not granted below.\n")
        header, blocks = _acl_blocks(text)
        blocks[username] = list(entry)
        out = [*header, ""]
        for block in blocks.values():
            out.extend([*block, ""])
        write_private(self._acl_file, "\n".join(out))


def provision_account(settings: Settings, username: str, *, site: str | None,
                      role: AccountRole, password_file: Path, acl_file: Path) -> Provisioned:
    """Provision one account, checking a device against the configured registry."""
    if role is AccountRole.DEVICE:
        registered = settings.device_map().get(username)
        if registered is not None:
            if site is not None and site != registered.site:
                raise ProvisionError(f"device {username!r} is registered on site "
                                     f"{registered.site!r}, not {site!r}")
            site = registered.site
        elif settings.devices:
            log.warning("device %s is not in the registry; ingest rejects its messages as "
                        "unknown_device until it is added", username)
    files = CredentialFiles(password_file, acl_file, topic_root=settings.mqtt.topic_root)
    return files.provision(Account(username=username, role=role, site=site))
