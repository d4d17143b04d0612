"""`shouwang devices provision` and the shipped broker config, proven on a private Mosquitto.

The broker runs config/mosquitto/mosquitto.conf itself (only paths and ports rewritten),
with TLS certificates made by openssl for this test in a temp dir, as docs/SECURITY.md
describes. Nothing here touches the shared test broker.
"""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from config.settings import DeviceConfig, Settings, SiteConfig
from shouwang.cli import main
from shouwang.provision import (
    Account,
    AccountRole,
    CredentialFiles,
    ProvisionError,
    hash_password,
    provision_account,
    verify_password,
)
from tests.security.mqtt_client import Client

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONF = ROOT / "config" / "mosquitto" / "mosquitto.conf"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def test_our_hashes_and_mosquitto_passwd_hashes_agree(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "dev", "s3cret pass"], check=True,
                   capture_output=True)
    theirs = passwd.read_text().strip().partition(":")[2]
    assert theirs.startswith("$7$")
    assert verify_password(theirs, "s3cret pass")
    assert not verify_password(theirs, "s3cret pasS")
    ours = hash_password("s3cret pass", iterations=101)
    assert ours.split("$")[1:3] == ["7", "101"]
    assert verify_password(ours, "s3cret pass") and not verify_password(ours, "")
    assert hash_password("x") != hash_password("x")  # salted


@pytest.mark.parametrize("username", ["", "a/b", "a+b", "a#", "dev:1", "x" * 65, "dev 1", "设备"])
def test_names_that_would_break_topics_or_the_password_file_are_refused(username: str) -> None:
    with pytest.raises(ProvisionError):
        Account(username=username, site="s1")


def test_a_device_needs_a_site_and_a_service_has_none() -> None:
    with pytest.raises(ProvisionError):
        Account(username="gas-1")
    with pytest.raises(ProvisionError):
        Account(username="ingest", role=AccountRole.INGEST, site="s1")


def test_reprovisioning_replaces_the_entry_and_files_stay_private(tmp_path: Path) -> None:
    files = CredentialFiles(tmp_path / "passwd", tmp_path / "acl")
    first = files.provision(Account(username="gas-1", site="s1"))
    files.provision(Account(username="ingest", role=AccountRole.INGEST))
    second = files.provision(Account(username="gas-1", site="s2"))
    assert first.password != second.password
    lines = (tmp_path / "passwd").read_text().splitlines()
    assert [line.partition(":")[0] for line in lines] == ["ingest", "gas-1"]
    assert verify_password(lines[1].partition(":")[2], second.password)
    acl = (tmp_path / "acl").read_text()
    assert acl.count("user gas-1") == 1 and "s1/gas-1" not in acl
    assert "topic write shouwang/v1/s2/gas-1/telemetry" in acl
    assert "user ingest\ntopic read shouwang/v1/#" in acl
    for name in ("passwd", "acl"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


def test_the_registry_decides_a_registered_devices_site(tmp_path: Path) -> None:
    settings = Settings(sites=[SiteConfig(id="s1", name="S1")],
                        devices=[DeviceConfig(id="gas-1", type="gas", site="s1")])
    done = provision_account(settings, "gas-1", site=None, role=AccountRole.DEVICE,
                             password_file=tmp_path / "passwd", acl_file=tmp_path / "acl")
    assert done.account.site == "s1"
    with pytest.raises(ProvisionError, match="registered on site 's1'"):
        provision_account(settings, "gas-1", site="s9", role=AccountRole.DEVICE,
                          password_file=tmp_path / "passwd", acl_file=tmp_path / "acl")


# ---- against a real broker running the shipped config ----

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path) -> None:
    """The same commands as docs/SECURITY.md, with a short validity for the test."""
    directory.mkdir(parents=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=Shouwang test CA", cwd=directory)
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=directory)
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext",
             cwd=directory)
    (directory / "server.key").chmod(0o644)  # the broker drops privileges before reading it


@dataclass(frozen=True, slots=True, kw_only=True)
class PrivateBroker:
    plain_port: int
    tls_port: int
    ca_file: Path
    password_file: Path
    acl_file: Path
    process: subprocess.Popen[bytes]

    def reload(self) -> None:
        self.process.send_signal(signal.SIGHUP)


def _shipped_config(directory: Path, plain_port: int, tls_port: int) -> str:
    text = SHIPPED_CONF.read_text()
    rewrites = {
        "persistence_location /mosquitto/data/": f"persistence_location {directory}/data/",
        "log_dest stdout": f"log_dest file {directory}/mosquitto.log",
        "/mosquitto/config/": f"{directory}/",
        "/mosquitto/certs/": f"{directory}/certs/",
        "listener 1883 0.0.0.0": f"listener {plain_port} 127.0.0.1",
        "listener 8883 0.0.0.0": f"listener {tls_port} 127.0.0.1",
    }
    for old, new in rewrites.items():
        assert old in text, f"the shipped config changed: {old!r} is gone"
        text = text.replace(old, new)
    return text + f"\nuser {getpass.getuser()}\n"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    make_certificates(tmp_path / "certs")
    (tmp_path / "data").mkdir()
    plain_port, tls_port = _free_port(), _free_port()
    files = CredentialFiles(tmp_path / "passwd", tmp_path / "acl")
    files.provision(Account(username="bootstrap", role=AccountRole.INGEST))  # files must exist
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(_shipped_config(tmp_path, plain_port, tls_port))
    process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                with socket.create_connection(("127.0.0.1", tls_port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "private mosquitto did not start"
                time.sleep(0.05)
        yield PrivateBroker(plain_port=plain_port, tls_port=tls_port,
                            ca_file=tmp_path / "certs" / "ca.crt",
                            password_file=tmp_path / "passwd", acl_file=tmp_path / "acl",
                            process=process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _provision_cli(broker: PrivateBroker, capsys: pytest.CaptureFixture[str],
                   *args: str) -> str:
    code = main(["devices", "provision", *args, "--password-file", str(broker.password_file),
                 "--acl-file", str(broker.acl_file)])
    out = capsys.readouterr().out
    assert code == 0, out
    return next(line.split(": ", 1)[1] for line in out.splitlines()
                if line.startswith("password: "))


@pytest.mark.integration
def test_provisioned_devices_connect_over_tls_and_publish_only_as_themselves(
        broker: PrivateBroker, capsys: pytest.CaptureFixture[str]) -> None:
    gas = _provision_cli(broker, capsys, "gas-1", "--site", "s1")
    other = _provision_cli(broker, capsys, "gas-2", "--site", "s1")
    ingest = _provision_cli(broker, capsys, "ingest-svc", "--service", "ingest")
    broker.reload()
    tls = {"ca_file": broker.ca_file}
    marker = uuid.uuid4().hex
    deadline = time.monotonic() + 10
    while True:  # SIGHUP is asynchronous: wait until the new accounts are in
        with Client("127.0.0.1", broker.plain_port, username="ingest-svc",
                    password=ingest) as probe:
            if probe.accepted or time.monotonic() > deadline:
                break
        time.sleep(0.05)
    with Client("127.0.0.1", broker.plain_port, username="ingest-svc", password=ingest) as sub, \
            Client("127.0.0.1", broker.tls_port, username="gas-1", password=gas, **tls) as dev:
        assert sub.accepted and dev.accepted
        assert not sub.subscribe("shouwang/v1/#").is_failure
        dev.publish("shouwang/v1/s1/gas-2/telemetry", f"forged {marker}".encode())
        dev.publish("shouwang/v1/s2/gas-1/telemetry", f"forged {marker}".encode())
        dev.publish("shouwang/v1/s1/gas-1/telemetry", f"own {marker}".encode())
        got = sub.wait_for(f"own {marker}".encode())
    assert [t for t, body in got if marker.encode() in body] == ["shouwang/v1/s1/gas-1/telemetry"]
    # Wrong or missing credentials are refused on both listeners.
    for port, extra in ((broker.plain_port, {}), (broker.tls_port, tls)):
        with Client("127.0.0.1", port, **extra) as anonymous:  # type: ignore[arg-type]
            assert not anonymous.accepted
        with Client("127.0.0.1", port, username="gas-1", password=other,
                    **extra) as wrong:  # type: ignore[arg-type]
            assert not wrong.accepted


@pytest.mark.integration
def test_the_tls_listener_refuses_plain_mqtt_and_untrusted_certificates(
        broker: PrivateBroker, tmp_path: Path) -> None:
    with Client("127.0.0.1", broker.tls_port, username="bootstrap", password="x") as plain:
        assert not plain.accepted
    make_certificates(tmp_path / "other-ca")
    with pytest.raises(ssl.SSLError):
        Client("127.0.0.1", broker.tls_port, username="bootstrap", password="x",
               ca_file=tmp_path / "other-ca" / "ca.crt").__enter__()


@pytest.mark.integration
def test_reprovisioning_rotates_the_password(broker: PrivateBroker,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    old = _provision_cli(broker, capsys, "wear-1", "--site", "s1")
    broker.reload()
    deadline = time.monotonic() + 10
    accepted = False
    while not accepted and time.monotonic() < deadline:
        with Client("127.0.0.1", broker.plain_port, username="wear-1", password=old) as c:
            accepted = c.accepted
    assert accepted
    new = _provision_cli(broker, capsys, "wear-1", "--site", "s1")
    broker.reload()
    deadline = time.monotonic() + 10
    refused = False
    while not refused and time.monotonic() < deadline:
        with Client("127.0.0.1", broker.plain_port, username="wear-1", password=old) as c:
            refused = not c.accepted
    assert refused
    with Client("127.0.0.1", broker.plain_port, username="wear-1", password=new) as c:
        assert c.accepted
