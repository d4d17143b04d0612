"""No secrets in the repository: every file git would commit is scanned for secret-like text.

Secrets come from the environment or from git-ignored files (config/mosquitto/passwd, acl,
certs/); the example config holds none. The scanner is checked against planted samples,
built at run time so this file does not trip it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

# Patterns that are a secret wherever they appear.
_ANYWHERE = {
    "private key": re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"),
    "mosquitto password hash": re.compile(r"^[^\s:#]+:\$[67]\$", re.MULTILINE),
    "URL with a password": re.compile(
        r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:(?P<value>[^@\s/'\"]+)@"),
}
# `key: value` / `key = value` in config-like files only: code and tests use throwaway
# passwords on purpose, config files must not carry real ones.
_ASSIGNMENT = re.compile(
    r"(?im)^[\s\"'{,-]*(?:[\w.-]*_)?(?:password|passwd|secret|token|api_?key|private_?key)"
    r"[\"']?\s*[:=]\s*(?P<value>[^\s#,}]+)")
_CONFIG_SUFFIXES = {".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf", ".env", ".json",
                    ".properties"}
# Not secrets: references to where the secret comes from, and obvious placeholders.
_PLACEHOLDER = re.compile(
    r"^(?:[\"']{2}|…|null|none|~|\$\{.*|\$[A-Z_]+.*|<.*|\*+|x+|\.\.\.|"
    r"(?:user|pass|password|secret|token|changeme|example|pw)|SecretStr.*|str.*|Field\(.*)$",
    re.IGNORECASE)


def repository_files() -> list[Path]:
    """Tracked files plus new ones git would add: what could be committed."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, check=True, capture_output=True).stdout
    return [ROOT / name for name in out.decode().split("\0") if name]


def find_secrets(name: str, text: str) -> list[str]:
    found: list[str] = []
    for label, pattern in _ANYWHERE.items():
        if label == "URL with a password" and name.startswith("tests/"):
            continue  # tests use made-up credentials on purpose (e.g. to check redaction)
        for match in pattern.finditer(text):
            value = match.groupdict().get("value")
            if value is None or not _PLACEHOLDER.match(value):
                found.append(f"{name}: {label}: {match.group(0)[:60]!r}")
    if Path(name).suffix in _CONFIG_SUFFIXES or Path(name).name in ("passwd", "acl"):
        for match in _ASSIGNMENT.finditer(text):
            if not _PLACEHOLDER.match(match.group("value").strip("\"'")):
                found.append(f"{name}: assignment: {match.group(0).strip()[:60]!r}")
    return found


def test_the_scanner_finds_planted_secrets() -> None:
    begin, key = "-----BEGIN ", " PRIVATE KEY-----"
    samples = {
        "k.pem": f"{begin}RSA{key}\nMIIE...\n",
        "ec.key": f"{begin}EC{key}\n",
        "a.py": "aws = '" + "AKIA" + "ABCDEFGHIJKLMNOP" + "'",
        "b.md": "token " + "ghp_" + "a1B2" * 9,
        "c.yaml": "database:\n  dsn: postgresql://shouwang:" + "hunter2hunter2" + "@db/x\n",
        "d.yaml": "mqtt:\n  password: " + "Tr0ub4dor&3\n",
        "e.toml": 'api_key = "' + "0123456789abcdef" + '"\n',
        "passwd": "gas-1:" + "$7$101$c2FsdA==$aGFzaA==\n",
        "f.env": "SHOUWANG_MQTT__PASSWORD=" + "s3cr3t-value\n",
        "g.json": '{"alert_token": "' + "abcdefghijkl" + '"}',
    }
    for name, text in samples.items():
        assert find_secrets(name, text), name
    harmless = {
        "h.yaml": "dsn: postgresql://shouwang:${POSTGRES_PASSWORD:-shouwang}@db/x\n"
                  "password: ${MQTT_PASSWORD}\ntoken: <from the environment>\n",
        "i.py": "client.username_pw_set('dev', 'not-the-password')  # tests may\n",
        "tests/unit/k.py": "urls=('jsn://user:hunter2@gateway.example/send',)\n",
        "j.md": "export SHOUWANG_DATABASE__DSN=postgresql://user:pass@host:5432/db\n",
    }
    for name, text in harmless.items():
        assert not find_secrets(name, text), name


def test_no_file_in_the_repository_holds_a_secret() -> None:
    files = repository_files()
    assert any(f.name == "pyproject.toml" for f in files)  # the listing is the real repo
    found: list[str] = []
    for path in files:
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary: images, fonts
        found += find_secrets(str(path.relative_to(ROOT)), text)
    assert found == []


def test_credential_files_and_keys_are_git_ignored() -> None:
    paths = ["config/mosquitto/passwd", "config/mosquitto/acl", "config/mosquitto/certs/ca.key",
             "config/mosquitto/server.key", ".services/env"]
    result = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True,
                            text=True)
    assert sorted(result.stdout.split()) == sorted(paths)


def _walk(node: object, path: str = "") -> list[tuple[str, object]]:
    if isinstance(node, dict):
        return [item for k, v in node.items() for item in _walk(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [item for i, v in enumerate(node) for item in _walk(v, f"{path}[{i}]")]
    return [(path, node)]


@pytest.mark.parametrize("name", ["config/community.example.yaml"])
def test_the_example_config_has_no_secrets(name: str) -> None:
    text = (ROOT / name).read_text(encoding="utf-8")
    assert find_secrets(name, text) == []
    for key, value in _walk(yaml.safe_load(text)):
        leaf = key.rsplit(".", 1)[-1].lower()
        assert not any(word in leaf for word in ("password", "secret", "token", "api_key")), key
        if isinstance(value, str):
            assert not re.search(r"://[^/\s:@]+:[^@\s/]+@", value), f"{key} has credentials"
