"""Real SMTP servers (aiosmtpd) on loopback for the mail tests: STARTTLS, implicit TLS or
plain, with AUTH, presenting certificates of a throwaway CA made here with `cryptography`;
and a database of the mail tests' own (its one ``mail_settings`` row is theirs alone)."""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import ipaddress
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import delete

from kanvaro.migrate import upgrade
from kanvaro.notify.models import MailSettings
from kanvaro.services import Services
from tests.conftest import PG_ADMIN_URL, _create_pg_database, _drop_pg_database, make_settings

USER = "relay-user"
# The canary: a password that must never show up in a log, an audit entry, a repr or a column.
CANARY = "Canary-Pw-7f3a9c51e2"


# --- a throwaway PKI -------------------------------------------------------------------------


@dataclass(frozen=True)
class Authority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    pem: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _window(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(
        now + datetime.timedelta(days=1)
    )


def _pem(path: Path, *parts: bytes) -> Path:
    path.write_bytes(b"".join(parts))
    return path


def make_authority(folder: Path, common: str) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        _window(x509.CertificateBuilder())
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = _pem(folder / f"{common}.pem", cert.public_bytes(serialization.Encoding.PEM))
    return Authority(key, cert, pem)


def server_context(folder: Path, authority: Authority, names: list[str]) -> ssl.SSLContext:
    """A server context presenting a certificate for ``names`` (DNS names or IPs)."""
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    cert = (
        _window(x509.CertificateBuilder())
        .subject_name(_name(names[0]))
        .issuer_name(authority.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
            critical=False,
        )
        .sign(authority.key, hashes.SHA256())
    )
    stem = f"{authority.cert.subject.rfc4514_string()}-{names[0]}".replace("=", "_")
    cert_path = _pem(folder / f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM))
    key_path = _pem(
        folder / f"{stem}.key",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


@dataclass(frozen=True)
class Pki:
    folder: Path
    ca: Authority  # the CA the client is told to trust (KANVARO_SMTP_CA_FILE)
    rogue: Authority  # a CA nobody trusts

    def context(self, names: list[str] | None = None, *, rogue: bool = False) -> ssl.SSLContext:
        return server_context(
            self.folder, self.rogue if rogue else self.ca, names or ["127.0.0.1", "localhost"]
        )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("smtp-pki")
    return Pki(folder, make_authority(folder, "Kanvaro Test CA"), make_authority(folder, "Rogue"))


# --- aiosmtpd servers --------------------------------------------------------------------------


@dataclass
class Received:
    message: email.message.EmailMessage
    mail_from: str
    rcpt_tos: list[str]
    encrypted: bool  # the connection the message came over was TLS
    login: str | None  # who signed in, if anyone


@dataclass
class Relay:
    """One aiosmtpd server; ``received`` fills as messages arrive, ``logins`` as AUTH runs."""

    port: int
    password: str
    received: list[Received] = field(default_factory=list)
    logins: list[tuple[str, str, bool]] = field(default_factory=list)  # mechanism, user, ok

    def authenticator(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        ok = user == USER and password == self.password
        self.logins.append((mechanism, user, ok))
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(
            Received(
                email.message_from_bytes(envelope.original_content, policy=email.policy.default),
                envelope.mail_from,
                list(envelope.rcpt_tos),
                server.transport.get_extra_info("ssl_object") is not None,
                session.auth_data,
            )
        )
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RelayFactory = Callable[..., Relay]


@pytest.fixture
def smtp_relay(pki: Pki) -> Iterator[RelayFactory]:
    """Start servers: ``smtp_relay("starttls" | "tls" | "none", password=..., rogue=...)``."""
    controllers: list[Controller] = []
    chatter = logging.getLogger("mail.log")  # aiosmtpd logs every connection at INFO
    level = chatter.level
    chatter.setLevel(logging.WARNING)

    def start(
        security: str,
        *,
        password: str = CANARY,
        rogue: bool = False,
        names: list[str] | None = None,
        exclude: tuple[str, ...] = (),
        offer_starttls: bool = True,
    ) -> Relay:
        relay = Relay(free_port(), password)
        context = pki.context(names, rogue=rogue)
        options: dict[str, Any] = {
            "authenticator": relay.authenticator,
            "auth_exclude_mechanism": list(exclude),
        }
        if security == "tls":
            # The whole connection is TLS; aiosmtpd only counts STARTTLS as encryption, so
            # its own "AUTH needs TLS" rule must be told.
            options.update(ssl_context=context, auth_require_tls=False)
        elif security == "starttls":
            options.update(require_starttls=offer_starttls)
            if offer_starttls:
                options["tls_context"] = context
        else:
            options.update(auth_require_tls=False)
        controller = Controller(relay, hostname="127.0.0.1", port=relay.port, **options)
        controller.start()
        controllers.append(controller)
        return relay

    yield start
    for controller in controllers:
        controller.stop()
    chatter.setLevel(level)


# --- a database of the mail tests' own ---------------------------------------------------------


@pytest.fixture(scope="module")
def mail_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """PostgreSQL when the suite runs on it, else SQLite: never the suite's shared database,
    whose one mail_settings row would redirect every other test's mail."""
    if PG_ADMIN_URL:
        url, name = asyncio.run(_create_pg_database())
        upgrade(url)
        yield url
        asyncio.run(_drop_pg_database(name))
    else:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('mail-db') / 'kanvaro.db'}"
        upgrade(url)
        yield url


@pytest.fixture(scope="module")
def mail_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mail-data")


@pytest.fixture
async def mail_services(
    mail_data_dir: Path, mail_database_url: str, pki: Pki
) -> AsyncIterator[Services]:
    """Services on the mail database with no relay stored (each test starts from none)."""
    settings = make_settings(mail_data_dir, mail_database_url, smtp_ca_file=pki.ca.pem)
    services = Services.build(settings)
    async with services.db.session(all_tenants=True) as session:
        await session.execute(delete(MailSettings))
    yield services
    await services.shutdown()
