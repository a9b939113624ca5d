"""Forward security events to a SIEM: syslog (RFC 5424) over UDP or TCP, and an HTTP webhook.

Security events are the structlog events of the ``kanvaro.security`` logger (authentication
attempts, permission denied, data access, token reuse, ...). A processor placed just before
the renderer (after redaction) copies each one to every running :class:`SiemForwarder`.

Forwarding never blocks or breaks a request: each destination has its own bounded queue and
sender thread; when a queue is full the event is dropped and counted (``dropped``), and a
failing destination only increments ``failed``. TCP uses octet-counting framing (RFC 6587
3.4.1: ``MSG-LEN SP SYSLOG-MSG``) and reconnects after an error.

The webhook's HTTPS honours the system's trust store and certPinning (``KANVARO_TLS_PINS``,
:mod:`kanvaro.security.outbound`): a pinned SIEM whose key does not match is refused before
an event is sent, counted as ``failed`` and logged once (``siem_send_failed``) in words that
name the host.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import orjson
import structlog

from kanvaro.logging import redaction_processor
from kanvaro.security.outbound import Pins, http_verify, refusal

SECURITY_LOGGER = "kanvaro.security"
APP_NAME = "kanvaro"
FACILITY_AUTHPRIV = 10  # RFC 5424 table 1: security/authorization messages
SEVERITY = {"critical": 2, "error": 3, "warning": 4, "warn": 4, "info": 6, "debug": 7}
BOM = "\ufeff"

log = structlog.get_logger("kanvaro.siem")  # not kanvaro.security: never forwarded itself


class SiemDeliveryError(RuntimeError):
    """A destination refused an event; the words name the host, never the URL or event."""


def _printable(value: str, limit: int) -> str:
    """RFC 5424 header fields are PRINTUSASCII (33..126), never empty (NILVALUE is '-')."""
    cleaned = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return cleaned or "-"


def format_rfc5424(event: Mapping[str, Any], *, hostname: str | None = None) -> bytes:
    """One RFC 5424 message: header fields, no structured data, the event as JSON (UTF-8)."""
    severity = SEVERITY.get(str(event.get("level", "info")).lower(), 6)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    header = " ".join(
        (
            f"<{FACILITY_AUTHPRIV * 8 + severity}>1",
            stamp,
            _printable(hostname or socket.gethostname(), 255),
            APP_NAME,
            str(os.getpid()),
            _printable(str(event.get("event", "security")), 32),
            "-",
        )
    )
    body = orjson.dumps(dict(event), default=str, option=orjson.OPT_SORT_KEYS).decode()
    return f"{header} {BOM}{body}".encode()


def parse_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be host:port")
    return host.strip("[]"), int(port)


class Destination(Protocol):
    name: str

    def send(self, event: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class SyslogUdp:
    def __init__(self, address: str) -> None:
        self.name = f"syslog+udp://{address}"
        self.address = parse_address(address)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def send(self, event: Mapping[str, Any]) -> None:
        self.sock.sendto(format_rfc5424(event)[:65000], self.address)

    def close(self) -> None:
        self.sock.close()


class SyslogTcp:
    def __init__(self, address: str, timeout: float = 5.0) -> None:
        self.name = f"syslog+tcp://{address}"
        self.address = parse_address(address)
        self.timeout = timeout
        self.sock: socket.socket | None = None

    def send(self, event: Mapping[str, Any]) -> None:
        message = format_rfc5424(event)
        frame = str(len(message)).encode() + b" " + message
        try:
            if self.sock is None:
                self.sock = socket.create_connection(self.address, timeout=self.timeout)
            self.sock.sendall(frame)
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Webhook:
    """``pins``: certPinning of the webhook's host (None: ``KANVARO_TLS_PINS``)."""

    def __init__(self, url: str, timeout: float = 5.0, *, pins: Pins | str | None = None) -> None:
        self.name = url.split("?", 1)[0]
        self.url = url
        self.host = urlsplit(url).hostname or "the SIEM"
        self.client = httpx.Client(
            timeout=timeout, follow_redirects=False, verify=http_verify(pins)
        )

    def send(self, event: Mapping[str, Any]) -> None:
        body = orjson.dumps(dict(event), default=str)
        try:
            response = self.client.post(
                self.url, content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.HTTPError as exc:
            words = refusal(exc)
            if words is None:
                raise
            raise SiemDeliveryError(
                f"the SIEM webhook at {self.host} was refused: {words}"
            ) from None
        response.raise_for_status()

    def close(self) -> None:
        self.client.close()


_STOP = object()


class _Lane:
    """One destination: a bounded queue and a daemon sender thread."""

    def __init__(self, destination: Destination, maxsize: int) -> None:
        self.destination = destination
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        self.sent = self.failed = self.dropped = 0
        self.last_error: str | None = None
        self.thread = threading.Thread(
            target=self._run, name=f"siem {destination.name}", daemon=True
        )
        self.thread.start()

    def submit(self, event: Mapping[str, Any]) -> None:
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            event = self.queue.get()
            if event is _STOP:
                return
            try:
                self.destination.send(event)
                self.sent += 1
                self.last_error = None
            except Exception as exc:  # a SIEM outage must never reach the application
                self.failed += 1
                self._note(exc)

    def _note(self, exc: Exception) -> None:
        """Log a failure once per distinct cause: our own errors in their words, any other
        by type only (an HTTP error's text holds the URL, whose query may hold a token)."""
        error = str(exc) if isinstance(exc, SiemDeliveryError) else type(exc).__name__
        if error != self.last_error:
            self.last_error = error
            where = getattr(self.destination, "host", None) or self.destination.name
            log.warning("siem_send_failed", destination=where, error=error)

    def stop(self, timeout: float) -> None:
        with contextlib.suppress(queue.Full):
            self.queue.put(_STOP, timeout=timeout)
        self.thread.join(timeout)
        self.destination.close()


class SiemForwarder:
    def __init__(self, destinations: list[Destination], *, maxsize: int = 1000) -> None:
        self.lanes = [_Lane(d, maxsize) for d in destinations]

    def submit(self, event: Mapping[str, Any]) -> None:
        for lane in self.lanes:
            lane.submit(event)

    def stats(self) -> dict[str, dict[str, int]]:
        return {
            lane.destination.name: {
                "sent": lane.sent,
                "failed": lane.failed,
                "dropped": lane.dropped,
                "queued": lane.queue.qsize(),
            }
            for lane in self.lanes
        }

    @property
    def dropped(self) -> int:
        return sum(lane.dropped for lane in self.lanes)

    def close(self, timeout: float = 2.0) -> None:
        unregister(self)
        for lane in self.lanes:
            lane.stop(timeout)


def from_settings(settings: Any) -> SiemForwarder | None:
    destinations: list[Destination] = []
    if settings.siem_syslog_udp:
        destinations.append(SyslogUdp(settings.siem_syslog_udp))
    if settings.siem_syslog_tcp:
        destinations.append(SyslogTcp(settings.siem_syslog_tcp))
    if settings.siem_webhook_url:
        destinations.append(
            Webhook(settings.siem_webhook_url, pins=getattr(settings, "tls_pins", None))
        )
    if not destinations:
        return None
    return SiemForwarder(destinations, maxsize=settings.siem_queue_size)


# --- structlog hook ------------------------------------------------------------------------

_forwarders: list[SiemForwarder] = []
_redact = redaction_processor()


class _NamedLogger:
    """Wraps the configured logger so processors can tell which named logger emitted."""

    def __init__(self, logger: Any, name: str | None) -> None:
        self._logger = logger
        self.name = name

    def __getattr__(self, item: str) -> Any:
        return getattr(self._logger, item)


class _NamingFactory:
    def __init__(self, base: Any) -> None:
        self.base = base

    def __call__(self, *args: Any) -> Any:
        name = args[0] if args and isinstance(args[0], str) else None
        return _NamedLogger(self.base(*args), name)


def _forward(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    if _forwarders and getattr(logger, "name", None) == SECURITY_LOGGER:
        event = _redact(logger, method_name, dict(event_dict))
        event.setdefault("level", method_name)
        event.setdefault("timestamp", datetime.now(UTC).isoformat())
        event["logger"] = SECURITY_LOGGER
        for forwarder in list(_forwarders):
            forwarder.submit(event)
    return event_dict


def _install_hook() -> None:
    """Idempotently add the naming factory and the forwarding processor to structlog."""
    config = structlog.get_config()
    factory = config["logger_factory"]
    processors = list(config["processors"])
    changes: dict[str, Any] = {}
    if not isinstance(factory, _NamingFactory):
        changes["logger_factory"] = _NamingFactory(factory)
    if _forward not in processors:
        processors.insert(max(len(processors) - 1, 0), _forward)
        changes["processors"] = processors
    if changes:
        structlog.configure(**changes)


def register(forwarder: SiemForwarder) -> None:
    _install_hook()
    if forwarder not in _forwarders:
        _forwarders.append(forwarder)


def unregister(forwarder: SiemForwarder) -> None:
    if forwarder in _forwarders:
        _forwarders.remove(forwarder)
