"""The attack tests reuse the real SMTP server (aiosmtpd) of the identity tests."""

from tests.identity.conftest import smtp_client, smtp_server, smtp_services  # noqa: F401
