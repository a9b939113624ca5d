"""Text messages behind one Protocol: a provider's HTTP API in production, an outbox folder in
development (``KANVARO_SMS_PROVIDER``).

The HTTP sender posts a JSON body built from an admin's template, so any provider that takes
JSON fits without code: the template is parsed once and ``{to}`` and ``{text}`` are replaced
inside its strings, then the whole is serialised again, so a message can never break out of
its string (no text substitution into raw JSON). Errors name the provider's status, never the
message (it holds a code) or the auth header (a secret). Its HTTPS honours the system's trust
store and certPinning (``KANVARO_TLS_PINS``, :mod:`kanvaro.security.outbound`): a pinned
gateway whose key does not match is refused before the message or the auth header is sent.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import httpx
import structlog

from kanvaro.config import Settings, SmsProvider, check_sms_template
from kanvaro.security.outbound import Pins, http_verify, refusal

if TYPE_CHECKING:
    from kanvaro.services import Services

log = structlog.get_logger("kanvaro.sms")


class SmsSender(Protocol):
    async def send(self, to: str, text: str) -> None: ...


class SmsError(RuntimeError):
    """The message was not accepted; says why without the message or any credential."""


class HttpSmsSender:
    def __init__(
        self,
        url: str,
        template: str,
        *,
        auth_header: str | None = None,
        timeout: float = 10.0,
        pins: Pins | str | None = None,
    ) -> None:
        """``pins``: certPinning of the gateway's host (None: ``KANVARO_TLS_PINS``)."""
        check_sms_template(template)
        self.url, self.timeout = url, timeout
        self._verify = http_verify(pins)
        self._template: Any = json.loads(template)
        self._headers = {"Content-Type": "application/json"}
        if auth_header:
            name, colon, value = auth_header.partition(":")
            if colon and name.strip() and " " not in name.strip():
                self._headers[name.strip()] = value.strip()
            else:  # a bare value: the usual place for an API key
                self._headers["Authorization"] = auth_header.strip()

    def __repr__(self) -> str:
        return f"HttpSmsSender(url={self.url!r})"

    def body(self, to: str, text: str) -> bytes:
        return json.dumps(_fill(self._template, to, text), ensure_ascii=False).encode()

    async def send(self, to: str, text: str) -> None:
        try:
            async with httpx.AsyncClient(
                timeout=self.timeout, follow_redirects=False, verify=self._verify
            ) as client:
                answer = await client.post(
                    self.url, content=self.body(to, text), headers=self._headers
                )
        except httpx.TimeoutException:
            raise SmsError("no answer from the SMS provider in time") from None
        except httpx.HTTPError as exc:
            words = refusal(exc)
            if words is not None:
                host = urlsplit(self.url).hostname or "the SMS provider"
                raise SmsError(f"the SMS provider at {host} was refused: {words}") from None
            raise SmsError(f"cannot reach the SMS provider ({type(exc).__name__})") from None
        if not answer.is_success:
            raise SmsError(f"the SMS provider answered {answer.status_code}")
        log.info("sms_sent", transport="http")


def _fill(node: Any, to: str, text: str) -> Any:
    if isinstance(node, str):
        return node.replace("{to}", to).replace("{text}", text)
    if isinstance(node, list):
        return [_fill(item, to, text) for item in node]
    if isinstance(node, dict):
        return {key: _fill(value, to, text) for key, value in node.items()}
    return node


class OutboxSmsSender:
    """Writes each message to ``<folder>/sms-<id>.txt`` (0600) for a developer to read."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __repr__(self) -> str:
        return f"OutboxSmsSender(folder={str(self.folder)!r})"

    async def send(self, to: str, text: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.folder / f"sms-{uuid.uuid4()}.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"To: {to}\n\n{text}\n")
        log.info("sms_written", transport="outbox")


def from_settings(settings: Settings) -> SmsSender | None:
    """The configured sender; None when SMS is off (production without a provider)."""
    transport = settings.sms_transport
    if transport is SmsProvider.outbox:
        return OutboxSmsSender(settings.data_dir / "outbox")
    if transport is SmsProvider.http:
        assert settings.sms_http_url is not None  # checked by Settings
        auth = settings.sms_http_auth_header
        return HttpSmsSender(
            settings.sms_http_url,
            settings.sms_http_template,
            auth_header=auth.get_secret_value() if auth else None,
            timeout=settings.sms_http_timeout_seconds,
            pins=settings.tls_pins,
        )
    return None


_UNSET = object()


def sender_of(services: Services) -> SmsSender | None:
    """The instance's sender, built from its settings on first use and kept on ``services``
    (``services.sms_sender``; a test sets its own there)."""
    sender = getattr(services, "sms_sender", _UNSET)
    if sender is _UNSET:
        sender = from_settings(services.settings)
        services.sms_sender = sender  # type: ignore[attr-defined]
    return sender  # type: ignore[return-value]
