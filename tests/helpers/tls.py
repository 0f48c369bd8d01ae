"""Self-signed certificates for the TLS tests, made by the openssl command line tool."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


def self_signed(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """(certfile, keyfile) of a new self-signed certificate for 127.0.0.1 and localhost; the
    certificate is its own CA, so a client verifies with cafile=certfile."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            OPENSSL,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={name}",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def client_context(cafile: Path) -> ssl.SSLContext:
    """A client context that trusts only `cafile`."""
    return ssl.create_default_context(cafile=str(cafile))
