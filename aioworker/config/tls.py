"""TLS for an https:// listener: the server-side SSLContext built from a group's files.

Each worker builds its own context from the files when it starts, so a reload (HUP) that
replaces the workers serves renewed certificates, while connections the old workers hold keep
their session until they drain. The master builds one too when it loads the config, only to
turn a missing, unreadable or mismatched file into an error that names its key.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from aioworker.config.settings import GroupSettings

__all__ = ["TlsError", "server_context", "tls_context", "tls_problem"]

_KEYS = ("certfile", "keyfile", "ca_certs", "ciphers")


class TlsError(ValueError):
    """A TLS setting cannot be used; `key` names it (certfile, keyfile, ca_certs, ciphers)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def server_context(
    certfile: str, keyfile: str, ca_certs: str = "", ciphers: str = ""
) -> ssl.SSLContext:
    """The context an https:// listener serves with. With `ca_certs`, clients must present a
    certificate signed by one of those CAs (mutual TLS)."""
    for key, path in (("certfile", certfile), ("keyfile", keyfile), ("ca_certs", ca_certs)):
        if path:
            _readable(key, path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.set_alpn_protocols(["http/1.1"])  # the only protocol this server speaks
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        # KEY_VALUES_MISMATCH: a valid key, of another certificate.
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise TlsError("keyfile", f"{keyfile} is not the key of {certfile}") from None
        if _lacks(certfile, b"-----BEGIN CERTIFICATE-----"):
            raise TlsError("certfile", f"no PEM certificate in {certfile}") from None
        if _lacks(keyfile, b"PRIVATE KEY-----"):
            raise TlsError("keyfile", f"no PEM private key in {keyfile}") from None
        raise TlsError("keyfile", f"cannot load {keyfile}: {exc.reason or exc}") from None
    if ca_certs:
        try:
            context.load_verify_locations(cafile=ca_certs)
        except ssl.SSLError as exc:
            raise TlsError("ca_certs", f"cannot load {ca_certs}: {exc.reason or exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    if ciphers:
        try:
            context.set_ciphers(ciphers)
        except ssl.SSLError:
            raise TlsError("ciphers", f"{ciphers!r} selects no cipher OpenSSL knows") from None
    return context


def _readable(key: str, path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise TlsError(key, f"cannot read {path}: {exc.strerror}") from None


def _lacks(path: str, marker: bytes) -> bool:
    with open(path, "rb") as stream:
        return marker not in stream.read()


def tls_context(group: GroupSettings, base_dir: Path) -> ssl.SSLContext | None:
    """The SSLContext of `group`'s https:// listen (None for http:// and unix:), its files
    read now, relative to `base_dir` (the config file's directory); raises TlsError."""
    address = group.address
    if address is None or not address.tls:
        return None

    def path(name: str) -> str:
        return str((base_dir / name).resolve()) if name else ""

    return server_context(
        path(group.certfile), path(group.keyfile), path(group.ca_certs), group.ciphers
    )


def tls_problem(group: GroupSettings, tls: bool, base_dir: Path) -> tuple[str, str] | None:
    """(key, problem) when the group's TLS settings cannot serve its listen, else None."""
    if not tls:
        for key in _KEYS:
            if getattr(group, key):
                return key, "set, but listen is not https://HOST:PORT"
        return None
    for key in ("certfile", "keyfile"):
        if not getattr(group, key):
            return key, "required by an https:// listen (a PEM file)"
    try:
        tls_context(group, base_dir)
    except TlsError as exc:
        return exc.key, str(exc)
    return None
