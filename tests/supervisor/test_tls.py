"""https:// groups: served with the group's certificate (scope scheme https), renewed files served
after a reload while open connections go on, and bad files as config errors naming the key."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import threading
from pathlib import Path

import httpx
import pytest

from tests.helpers.daemon import cli as aioworker
from tests.helpers.master import MasterProcess, config_text, make_dir, running_master, spawn
from tests.helpers.tls import client_context, self_signed

HTTPS = """
[groups.web]
app = "tests.apps.gated:app"
listen = "https://127.0.0.1:0"
certfile = "server.crt"
keyfile = "server.key"
count = 1
"""


def _https_port(master: MasterProcess) -> int:
    return int(master.wait_for(r"listening group=web url=https://127\.0\.0\.1:(\d+)").group(1))


def _get(port: int, cafile: Path) -> httpx.Response:
    with httpx.Client(verify=client_context(cafile)) as client:
        return client.get(f"https://127.0.0.1:{port}/")


def test_an_https_group_serves_tls_with_scheme_https() -> None:
    directory = make_dir()
    cert, _ = self_signed(directory)
    with running_master(config_text(HTTPS), directory) as master:
        response = _get(_https_port(master), cert)
        assert (response.status_code, response.text) == (200, "https")


def test_serve_certfile_and_keyfile_serve_https() -> None:
    directory = make_dir()
    cert, key = self_signed(directory)
    args = ["serve", "tests.apps.gated:app", "--listen", "http://127.0.0.1:0"]
    master = spawn([*args, "--certfile", str(cert), "--keyfile", str(key)], directory)
    try:
        master.wait_started()
        response = _get(_https_port(master), cert)
        assert (response.status_code, response.text) == (200, "https")
    finally:
        master.stop()


class TlsRequest:
    """`GET /gate` over its own TLS connection, in a thread: (status line, body) or the error."""

    def __init__(self, port: int, cafile: Path) -> None:
        self.outcome: list[object] = []
        context = client_context(cafile)
        self.thread = threading.Thread(target=self._run, args=(port, context), daemon=True)
        self.thread.start()

    def _run(self, port: int, context: ssl.SSLContext) -> None:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
            ):
                tls.sendall(b"GET /gate HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            self.outcome.append((head.split(b"\r\n")[0], body))
        except OSError as exc:
            self.outcome.append(exc)

    def result(self) -> object:
        self.thread.join(30)
        return self.outcome[0]


def test_reload_serves_renewed_certificates_and_open_connections_go_on() -> None:
    directory = make_dir()
    gate = directory / "gate"
    os.mkfifo(gate)
    cert, key = self_signed(directory)
    old_ca = directory / "old-ca.crt"
    old_ca.write_bytes(cert.read_bytes())
    with running_master(config_text(HTTPS), directory, env={"GATE": str(gate)}) as master:
        port = _https_port(master)
        request = TlsRequest(port, old_ca)  # a connection in progress on the old certificate
        master.wait_for(r"GATE WAITING")
        new_cert, new_key = self_signed(make_dir(), "renewed")
        os.replace(new_cert, cert)
        os.replace(new_key, key)
        since = master.mark()
        master.signal(signal.SIGHUP)
        master.wait_for(r"reloaded group=web generation=1", since)
        assert _get(port, cert).text == "https"  # new connections: the renewed certificate
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            _get(port, old_ca)
        fd = os.open(gate, os.O_WRONLY)  # the old worker, draining, still holds it
        os.write(fd, b"finished\n")
        os.close(fd)
        assert request.result() == (b"HTTP/1.1 200 OK", b"finished")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            ('certfile = "server.crt"\n', ""),
            "groups.web.certfile: required by an https:// listen (a PEM file)",
            id="no-certfile",
        ),
        pytest.param(
            ("server.crt", "missing.crt"),
            "groups.web.certfile: cannot read {dir}/missing.crt: No such file or directory",
            id="missing-file",
        ),
        pytest.param(
            ('"server.crt"', '"server.key"'),
            "groups.web.certfile: no PEM certificate in {dir}/server.key",
            id="key-as-certificate",
        ),
        pytest.param(
            ("server.key", "other.key"),
            "groups.web.keyfile: {dir}/other.key is not the key of {dir}/server.crt",
            id="key-of-another-certificate",
        ),
        pytest.param(
            ("https://", "http://"),
            "groups.web.certfile: set, but listen is not https://HOST:PORT",
            id="certfile-without-https",
        ),
        pytest.param(
            ('keyfile = "server.key"\n', 'keyfile = "server.key"\nciphers = "NOPE"\n'),
            "groups.web.ciphers: 'NOPE' selects no cipher OpenSSL knows",
            id="bad-ciphers",
        ),
        pytest.param(
            ('keyfile = "server.key"\n', 'keyfile = "server.key"\nca_certs = "missing.crt"\n'),
            "groups.web.ca_certs: cannot read {dir}/missing.crt: No such file or directory",
            id="missing-ca-certs",
        ),
        pytest.param(
            ('keyfile = "server.key"\n', 'keyfile = "server.key"\nca_certs = "server.key"\n'),
            "groups.web.ca_certs: cannot load {dir}/server.key:",
            id="key-as-ca-certs",
        ),
    ],
)
def test_bad_tls_settings_are_config_errors_naming_the_key(
    change: tuple[str, str], message: str
) -> None:
    directory = make_dir()
    self_signed(directory)
    self_signed(directory, "other")
    (directory / "config.toml").write_text(config_text(HTTPS.replace(*change)))
    result = aioworker("check", cwd=directory)
    assert result.returncode == 2, result.stdout
    where = directory / "config.toml"
    assert f"{where}: {message.format(dir=directory)}" in result.stderr


REFUSED = (ssl.SSLError, httpx.TransportError)


def test_ca_certs_admits_only_clients_with_a_certificate_it_signed() -> None:
    directory = make_dir()
    cert, _ = self_signed(directory)
    client_cert, client_key = self_signed(directory, "client")
    stranger_cert, stranger_key = self_signed(directory, "stranger")
    mutual = HTTPS.replace(
        'keyfile = "server.key"\n', 'keyfile = "server.key"\nca_certs = "client.crt"\n'
    )
    with running_master(config_text(mutual), directory) as master:
        port = _https_port(master)
        # Refused: with TLS 1.3 the client learns it from an alert or a closed connection after
        # its side of the handshake, so either error stands for the refusal.
        with pytest.raises(REFUSED):  # no client certificate
            _get(port, cert)
        stranger = client_context(cert)
        stranger.load_cert_chain(stranger_cert, stranger_key)
        with pytest.raises(REFUSED), httpx.Client(verify=stranger) as client:
            client.get(f"https://127.0.0.1:{port}/")
        known = client_context(cert)
        known.load_cert_chain(client_cert, client_key)
        with httpx.Client(verify=known) as client:
            response = client.get(f"https://127.0.0.1:{port}/")
        assert (response.status_code, response.text) == (200, "https")
