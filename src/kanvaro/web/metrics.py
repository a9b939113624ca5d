"""``GET /metrics``: the Prometheus text exposition, installed only when
``KANVARO_METRICS_ENABLED`` is true.

A scrape needs ``Authorization: Bearer <KANVARO_METRICS_TOKEN>`` (compared in constant time),
unless the client address is inside ``KANVARO_METRICS_ANONYMOUS_CIDRS``, a list the admin
writes on purpose. The address is the one the rest of the API sees (``X-Forwarded-For`` only
from ``KANVARO_TRUSTED_PROXIES``). With neither a token nor a matching network every scrape is
refused: enabling metrics never opens them by itself. Refusals are problem+json and logged
without the presented value.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass, field

import structlog
from fastapi import APIRouter, Request, Response
from prometheus_client.core import Metric
from sqlalchemy import select

from kanvaro import metrics
from kanvaro.audit import observe as audit_observe
from kanvaro.config import Settings
from kanvaro.crypto.models import KeyRotation
from kanvaro.deps import public, request_ip, services_of
from kanvaro.problems import problem_response
from kanvaro.security.client_ip import Network, parse_networks
from kanvaro.services import Services

METRICS_PATH = "/metrics"

log = structlog.get_logger("kanvaro.metrics")
security_log = structlog.get_logger("kanvaro.security")


@dataclass(frozen=True)
class Refusal:
    status: int
    detail: str
    reason: str  # for the log: no_token, wrong_token, not_allowed


def _bearer(authorization: str | None) -> bytes | None:
    scheme, _, value = (authorization or "").partition(" ")
    value = value.strip()
    return value.encode() if scheme.lower() == "bearer" and value else None


@dataclass(frozen=True)
class ScrapePolicy:
    """Who may scrape, decided once from the settings."""

    token: bytes = field(repr=False)  # empty: no token configured, so none is accepted
    anonymous: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> ScrapePolicy:
        token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
        return cls(token.encode(), parse_networks(settings.metrics_anonymous_cidrs))

    def _anonymous_allowed(self, ip: str | None) -> bool:
        if ip is None or not self.anonymous:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.anonymous)

    def refusal(self, *, ip: str | None, authorization: str | None) -> Refusal | None:
        """None when the scrape may be answered; otherwise why not (fails closed)."""
        if self._anonymous_allowed(ip):
            return None
        if not self.token:
            return Refusal(403, "Metrics are not served to this client.", "not_allowed")
        presented = _bearer(authorization)
        if presented is None:
            return Refusal(401, "A metrics bearer token is required.", "no_token")
        if not hmac.compare_digest(presented, self.token):
            return Refusal(401, "A metrics bearer token is required.", "wrong_token")
        return None


async def _rotation(services: Services) -> list[Metric]:
    """The latest key rotation's progress; omitted (and logged) when the database is away, so
    the process figures still reach the scraper."""
    try:
        async with services.db.session(all_tenants=True) as session:
            latest = (
                await session.execute(
                    select(KeyRotation).order_by(KeyRotation.started_at.desc()).limit(1)
                )
            ).scalar_one_or_none()
            return metrics.rotation_families(latest)
    except Exception as exc:
        log.warning("metrics_rotation_unavailable", error_type=type(exc).__name__)
        return []


def observe_audit_log() -> None:
    """Feed the audit log's hooks (appends, sequencing delays) into the metrics, once per
    process however many apps are built."""
    if metrics.observe_audit_append not in audit_observe.appended:
        audit_observe.appended.append(metrics.observe_audit_append)
    if metrics.observe_sequencing_delay not in audit_observe.sequenced:
        audit_observe.sequenced.append(metrics.observe_sequencing_delay)


def router_for(settings: Settings) -> APIRouter:
    """The ``/metrics`` route under the scrape policy of ``settings``."""
    policy = ScrapePolicy.from_settings(settings)
    observe_audit_log()
    router = APIRouter(dependencies=[public()], include_in_schema=False)

    @router.get(METRICS_PATH)
    async def scrape(request: Request) -> Response:
        ip = request_ip(request)
        refusal = policy.refusal(ip=ip, authorization=request.headers.get("authorization"))
        if refusal is not None:
            security_log.warning("metrics_scrape_refused", ip=ip, reason=refusal.reason)
            challenge = {"WWW-Authenticate": 'Bearer realm="kanvaro-metrics"'}
            return problem_response(
                refusal.status,
                detail=refusal.detail,
                instance=METRICS_PATH,
                headers=challenge if refusal.status == 401 else None,
            )
        body = metrics.render(await _rotation(services_of(request)))
        return Response(body, media_type=metrics.CONTENT_TYPE)

    return router
