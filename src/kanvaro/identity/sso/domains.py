"""Email domains a tenant proves it controls, for home-realm discovery (issue 13 point 1).

An administrator claims a domain and gets a random token; he publishes it as a TXT record
``_kanvaro-challenge.<domain>`` = ``kanvaro-domain-verification=<token>`` and asks for a
check. Only a DNS answer holding exactly that value verifies the domain. Every failure -
the name does not exist, no TXT record, other values only, a timeout, a failing resolver -
leaves it unverified (fail closed) and is reported in words in ``lastError``.

One tenant at most holds a domain verified: a partial unique index over the verified rows
decides, below row-level security, so a second tenant's claim stays pending however it was
made, and discovery can never find two tenants for one domain. A verified domain is checked
again periodically (``sso.domains.recheck``); after ``KANVARO_SSO_DOMAIN_MAX_FAILURES``
failed checks in a row it is verified no more.

Only what a tenant proved this way routes discovery (and counts as an allowed domain for
SSO sign-in): an administrator's word alone would let a tenant claim gmail.com, or another
company's domain, and capture its users' discovery.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

import dns.asyncresolver
import dns.exception
import dns.resolver
import idna
import structlog
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.acting import Acting
from kanvaro.config import Settings
from kanvaro.errors import Conflict, NotFound, Unprocessable
from kanvaro.identity.sso.models import DOMAIN_PENDING, DOMAIN_VERIFIED, SsoDomain
from kanvaro.services import Services

log = structlog.get_logger("kanvaro.sso.domains")

CHALLENGE_LABEL = "_kanvaro-challenge"
VALUE_PREFIX = "kanvaro-domain-verification="
MAX_PER_TENANT = 100
NO_DOMAIN = "No such domain."
_RECHECK_CONCURRENCY = 8


class InvalidDomain(ValueError):
    """Not a domain name that can be verified; the message is a sentence safe to show."""


def ascii_domain(value: str) -> str:
    """The domain as stored and compared: lower-case, IDNA 2008 A-labels (UTS 46 mapping),
    without a trailing dot; InvalidDomain otherwise. IP addresses and single labels are
    refused (no TXT record proves control of an address)."""
    text = value.strip().lstrip("@").rstrip(".")
    if not text or len(text) > 253:
        raise InvalidDomain("Enter a domain name of at most 253 characters, as in acme.com.")
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        pass
    else:
        raise InvalidDomain("An IP address is not a domain name.")
    try:
        encoded = idna.encode(text, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        raise InvalidDomain(f"{value.strip()[:100]!r} is not a valid domain name.") from None
    labels = encoded.split(".")
    if len(labels) < 2 or len(encoded) > 253:
        raise InvalidDomain("A domain name needs at least two labels, as in acme.com.")
    for label in labels:
        if not label or len(label) > 63 or not all(c.isalnum() or c == "-" for c in label):
            raise InvalidDomain(f"{value.strip()[:100]!r} is not a valid domain name.")
        if label.startswith("-") or label.endswith("-"):
            raise InvalidDomain(f"{value.strip()[:100]!r} is not a valid domain name.")
    if labels[-1].isdigit():
        raise InvalidDomain("The last label of a domain name is not a number.")
    return encoded


def comparable(value: str) -> str:
    """A domain in the stored form when it has one, else lower-cased as given (for comparing
    an address's domain with domains named in a configuration)."""
    try:
        return ascii_domain(value)
    except InvalidDomain:
        return value.strip().lower().rstrip(".")


def challenge_name(domain: str) -> str:
    return f"{CHALLENGE_LABEL}.{domain}"


def challenge_value(token: str) -> str:
    return f"{VALUE_PREFIX}{token}"


# --- the DNS check ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """What a lookup found: ``kind`` is ``verified``, ``nxdomain``, ``no_txt``,
    ``wrong_value``, ``timeout``, ``no_answer_from_servers`` or ``error``; ``message`` says it
    in words (None when verified)."""

    kind: str
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.kind == "verified"


def resolver(settings: Settings) -> dns.asyncresolver.Resolver:
    """A resolver for one check: the configured name servers (or the system's), the port,
    the time limit; no cache, so a check always asks."""
    if settings.dns_nameservers:
        found = dns.asyncresolver.Resolver(configure=False)
        found.nameservers = list(settings.dns_nameservers)
    else:
        found = dns.asyncresolver.Resolver()
    found.port = settings.dns_port
    found.timeout = settings.dns_timeout_seconds
    found.lifetime = settings.dns_timeout_seconds
    found.cache = None
    return found


def _txt_values(answer: dns.resolver.Answer) -> list[bytes]:
    # A TXT record is one or more character-strings, to be read as one value joined.
    return [b"".join(getattr(rdata, "strings", ())) for rdata in answer]


async def check(settings: Settings, domain: str, token: str) -> CheckResult:
    """Ask DNS for the domain's challenge record. Never raises: every failure is a result
    (and none of them verifies)."""
    name = challenge_name(domain)
    try:
        answer = await resolver(settings).resolve(name, "TXT", search=False)
    except dns.resolver.NXDOMAIN:
        return CheckResult("nxdomain", f"The name {name} does not exist in DNS (NXDOMAIN).")
    except dns.resolver.NoAnswer:
        return CheckResult("no_txt", f"There is no TXT record at {name}.")
    except dns.exception.Timeout:
        return CheckResult(
            "timeout",
            f"The DNS lookup of {name} timed out after {settings.dns_timeout_seconds:g} s.",
        )
    except dns.resolver.NoNameservers:
        return CheckResult(
            "no_answer_from_servers",
            f"No DNS server answered the lookup of {name} (SERVFAIL or refused).",
        )
    except dns.resolver.NoResolverConfiguration:
        return CheckResult("error", "No DNS resolver is configured on this server.")
    except (dns.exception.DNSException, OSError) as exc:
        log.warning("sso_domain_lookup_failed", error_type=type(exc).__name__)
        return CheckResult("error", f"The DNS lookup of {name} failed.")
    expected = challenge_value(token).encode("ascii")
    if any(hmac.compare_digest(value.strip(), expected) for value in _txt_values(answer)):
        return CheckResult("verified")
    return CheckResult(
        "wrong_value",
        f"The TXT records at {name} do not hold this organization's verification value.",
    )


# --- reads ------------------------------------------------------------------------------------


async def verified(db: AsyncSession) -> tuple[str, ...]:
    """The DNS-verified domains of the session's tenant."""
    rows = await db.execute(
        select(SsoDomain.domain)
        .where(SsoDomain.status == DOMAIN_VERIFIED)
        .order_by(SsoDomain.domain)
    )
    return tuple(rows.scalars())


async def list_all(ctx: Acting) -> list[SsoDomain]:
    rows = await ctx.db.execute(select(SsoDomain).order_by(SsoDomain.domain))
    return list(rows.scalars())


async def get(ctx: Acting, domain_id: uuid.UUID) -> SsoDomain:
    row = await ctx.db.get(SsoDomain, domain_id)
    if row is None or row.tenant_id != ctx.tenant_id:
        raise NotFound(NO_DOMAIN)
    return row


# --- actions ----------------------------------------------------------------------------------


async def add(ctx: Acting, value: str) -> SsoDomain:
    """Claim a domain (pending until a check finds its TXT record)."""
    try:
        domain = ascii_domain(value)
    except InvalidDomain as exc:
        raise Unprocessable(
            str(exc), errors=[{"field": "domain", "in": "body", "message": str(exc)}]
        ) from None
    have = await ctx.db.scalar(select(func.count()).select_from(SsoDomain))
    if (have or 0) >= MAX_PER_TENANT:
        raise Unprocessable(
            f"An organization can claim at most {MAX_PER_TENANT} domains.",
            errors=[{"field": "domain", "in": "body", "message": "too many domains"}],
        )
    now = ctx.services.clock.now()
    row = SsoDomain(
        tenant_id=ctx.tenant_id,
        domain=domain,
        token=secrets.token_urlsafe(24),
        status=DOMAIN_PENDING,
        failures=0,
        created_by=ctx.actor_id,
        created_at=now,
        updated_at=now,
    )
    try:
        async with ctx.db.begin_nested():
            ctx.db.add(row)
            await ctx.db.flush()
    except IntegrityError:
        raise Conflict(
            f"{domain} is already claimed by this organization.",
            errors=[{"field": "domain", "in": "body", "message": "already claimed"}],
        ) from None
    await ctx.record(
        "api:sso_domain:create",
        category="system",
        resource_type="sso_domain",
        resource_id=row.id,
        changes={"domain": domain},
    )
    return row


async def _apply(
    db: AsyncSession, row: SsoDomain, result: CheckResult, now: datetime, max_failures: int
) -> str:
    """Write a check's outcome to the row; returns its status afterwards. A verification
    that another tenant already holds stays pending (the unique index says so)."""
    values: dict[str, object] = {"last_checked_at": now, "updated_at": now}
    if result.ok:
        values.update(failures=0, last_error=None, status=DOMAIN_VERIFIED)
        if row.status != DOMAIN_VERIFIED:
            values["verified_at"] = now
    else:
        failures = (row.failures or 0) + 1
        values.update(failures=failures, last_error=result.message)
        if row.status == DOMAIN_VERIFIED and failures >= max_failures:
            values.update(
                status=DOMAIN_PENDING,
                verified_at=None,
                last_error=(
                    f"No longer verified after {failures} failed checks in a row: {result.message}"
                )[:500],
            )
    statement = (
        update(SsoDomain)
        .where(SsoDomain.id == row.id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    try:
        async with db.begin_nested():
            await db.execute(statement)
    except IntegrityError:
        await db.execute(
            update(SsoDomain)
            .where(SsoDomain.id == row.id)
            .values(
                last_checked_at=now,
                updated_at=now,
                last_error="Another organization has verified this domain; it cannot be "
                "verified here until that organization removes it or loses its verification.",
            )
            .execution_options(synchronize_session=False)
        )
    await db.refresh(row)
    return row.status


async def verify(ctx: Acting, domain_id: uuid.UUID) -> SsoDomain:
    """Check the domain's TXT record now (audited, whatever the outcome). For a verified
    domain this is one more periodic check: a failure counts towards demotion."""
    row = await get(ctx, domain_id)
    before = row.status
    settings = ctx.services.settings
    result = await check(settings, row.domain, row.token)
    after = await _apply(
        ctx.db, row, result, ctx.services.clock.now(), settings.sso_domain_max_failures
    )
    changes: dict[str, object] = {"domain": row.domain, "result": result.kind}
    if before != after:
        changes["status"] = {"from": before, "to": after}
    elif result.ok and after != DOMAIN_VERIFIED:
        changes["result"] = "verified_elsewhere"
    await ctx.record(
        "api:sso_domain:verify",
        category="system",
        resource_type="sso_domain",
        resource_id=row.id,
        changes=changes,
    )
    return row


async def remove(ctx: Acting, domain_id: uuid.UUID) -> None:
    """Give a domain up: discovery stops routing it here at once."""
    row = await get(ctx, domain_id)
    domain, status = row.domain, row.status
    await ctx.db.execute(
        delete(SsoDomain).where(SsoDomain.id == row.id).execution_options(synchronize_session=False)
    )
    ctx.db.expunge(row)
    await ctx.record(
        "api:sso_domain:delete",
        category="system",
        resource_type="sso_domain",
        resource_id=domain_id,
        changes={"domain": domain, "status": status},
    )


# --- the periodic re-check ----------------------------------------------------------------------


async def recheck(services: Services) -> int:
    """Check every verified domain of every tenant again; returns how many were demoted.
    Lookups run a few at a time; each outcome is written in its tenant's own transaction,
    failures and demotions audited as the instance's (``job:`` actions)."""
    async with services.db.session(all_tenants=True) as db:
        rows = (
            await db.execute(
                select(SsoDomain.id, SsoDomain.tenant_id, SsoDomain.domain, SsoDomain.token)
                .where(SsoDomain.status == DOMAIN_VERIFIED)
                .order_by(SsoDomain.tenant_id, SsoDomain.domain)
            )
        ).all()
    gate = asyncio.Semaphore(_RECHECK_CONCURRENCY)

    async def one(domain: str, token: str) -> CheckResult:
        async with gate:
            return await check(services.settings, domain, token)

    results = await asyncio.gather(*(one(r.domain, r.token) for r in rows))
    demoted = 0
    for found, result in zip(rows, results, strict=True):
        async with services.db.session(tenant_id=found.tenant_id) as db:
            row = await db.get(SsoDomain, found.id)
            if row is None or row.status != DOMAIN_VERIFIED:
                continue  # removed or changed meanwhile
            after = await _apply(
                db, row, result, services.clock.now(), services.settings.sso_domain_max_failures
            )
            if result.ok:
                continue
            ctx = Acting.system(
                services, db, tenant_id=found.tenant_id, channel="job", name="sso.domains"
            )
            lost = after != DOMAIN_VERIFIED
            demoted += lost
            await ctx.record(
                "job:sso_domain:unverified" if lost else "job:sso_domain:check_failed",
                category="system",
                resource_type="sso_domain",
                resource_id=row.id,
                changes={"domain": row.domain, "result": result.kind, "failures": row.failures},
            )
    return demoted
