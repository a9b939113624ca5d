"""Password login, refresh-token rotation with reuse detection, and logout.

A login creates a session (one refresh-token family). Each refresh spends its token and
issues the next one; presenting a spent refresh token again means it was stolen (or replayed)
and ends the whole session at once. Unknown email, wrong password, disabled account and
suspended tenant all answer the same 401 after the same amount of hashing work.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro import metrics
from kanvaro.acting import record_surviving
from kanvaro.audit import service as audit
from kanvaro.audit.service import AuditContext
from kanvaro.db import on_commit, run_after_commit, utcnow
from kanvaro.errors import MfaRequired, SignInRefused, TooManyRequests, Unauthorized
from kanvaro.identity import auth_statements as sql
from kanvaro.identity import device_cookie
from kanvaro.identity.emails import InvalidEmail, normalize_email
from kanvaro.identity.mfa import flow as mfa_flow
from kanvaro.identity.mfa.flow import MfaStep
from kanvaro.identity.mfa.requirement import Counted
from kanvaro.identity.models import UserSession
from kanvaro.identity.sessions import alerts, signin
from kanvaro.identity.sessions.policy import SessionPolicy
from kanvaro.identity.sessions.signin import SignInRequest
from kanvaro.identity.sso.policy import check_password_sign_in
from kanvaro.reads import Reader, session_reader
from kanvaro.security.throttle import Client
from kanvaro.security.tokens import ACCESS, REFRESH, TokenError, token_hash
from kanvaro.services import Services

security_log = structlog.get_logger("kanvaro.security")

INVALID_CREDENTIALS = "The email address, password or tenant is wrong."


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: uuid.UUID
    # A new device secret for the client to keep and present at its next sign-in (None when
    # it presented one): what recognises the device, never the User-Agent.
    device_token: str | None = None

    def __repr__(self) -> str:
        return f"TokenPair(session_id={self.session_id})"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "requiresMFA": False,
            "accessToken": self.access_token,
            "refreshToken": self.refresh_token,
            "tokenType": "Bearer",
            "expiresIn": self.expires_in,
        }
        if self.device_token is not None:
            out["deviceToken"] = self.device_token
        return out


@dataclass(frozen=True)
class OpenedSession:
    """A session (one refresh-token family): what its tokens are issued for."""

    id: uuid.UUID
    user_id: uuid.UUID
    tenant_id: uuid.UUID | None
    device_token: str | None = None  # a device secret handed out by this sign-in

    def claims(self) -> dict[str, str | None]:
        return {
            "sub": str(self.user_id),
            "sid": str(self.id),
            "tid": str(self.tenant_id) if self.tenant_id else None,
        }


@dataclass(frozen=True)
class _Signed:
    pair: TokenPair
    refresh_jti: str
    refresh_hash: str  # what the database keeps of the refresh token
    access_hash: str
    issued_at: datetime  # the refresh token's iat and exp, as its row stores them
    expires_at: datetime


def _sign(
    services: Services,
    opened: OpenedSession,
    *,
    started: int,
    absolute_seconds: int,
    parent_jti: str | None = None,
    issued_at: int | None = None,
    refresh_expires_at: int | None = None,
) -> _Signed:
    """An access and a refresh token for a session that began at ``started`` (token clock,
    the ``sst`` claim). Neither outlives the session's absolute end, so a rotation never
    extends it. A successor of ``parent_jti`` gets token ids derived from it (keyed), and
    with the same ``issued_at`` the very same tokens again: what a refresh replayed within
    its grace window receives."""
    tokens = services.tokens
    iat = int(tokens.clock()) if issued_at is None else issued_at
    end = started + absolute_seconds
    claims = {**opened.claims(), "sst": started}
    access_jti = refresh_jti = None
    if parent_jti is not None:
        access_jti = _derived_jti(services, parent_jti, "access")
        refresh_jti = _derived_jti(services, parent_jti, "refresh")
    access, _ = tokens.issue(
        ACCESS, claims, issued_at=iat, expires_at=min(iat + tokens.access_ttl, end), jti=access_jti
    )
    refresh_exp = (
        min(iat + tokens.refresh_ttl, end) if refresh_expires_at is None else refresh_expires_at
    )
    refresh_token, refresh_claims = tokens.issue(
        REFRESH, claims, issued_at=iat, expires_at=refresh_exp, jti=refresh_jti
    )
    pair = TokenPair(access, refresh_token, tokens.access_ttl, opened.id, opened.device_token)
    return _Signed(
        pair,
        refresh_claims["jti"],
        token_hash(refresh_token),
        token_hash(access),
        datetime.fromtimestamp(iat, UTC),
        datetime.fromtimestamp(refresh_exp, UTC),
    )


def _derived_jti(services: Services, parent_jti: str, use: str) -> str:
    return services.keyring.blind_index(None, f"token-successor/{use}", parent_jti)[:32]


@dataclass(frozen=True)
class FirstFactor:
    """A verified first factor: who proved what. Opening a session is a separate step, so
    that MFA, passkeys and SSO add steps instead of copies of sign-in."""

    user_id: uuid.UUID
    tenant_id: uuid.UUID | None
    method: str
    password_hash: str | None  # as verified: a change meanwhile voids the sign-in
    new_hash: str | None = None  # an upgraded (rehashed) password to store
    second: str | None = None  # the second factor proved after it (MFA), if any

    def __repr__(self) -> str:
        return f"FirstFactor(user_id={self.user_id}, method={self.method})"

    @property
    def methods(self) -> list[str]:
        """What the session records as proved (``amr``)."""
        return [self.method, self.second] if self.second else [self.method]


async def login(
    services: Services,
    session: AsyncSession,
    *,
    email: str,
    password: str,
    tenant: str | None = None,
    context: AuditContext,
    client: SignInRequest,
) -> TokenPair | MfaStep:
    """Password sign-in: verify the first factor; then either the second step (a challenge,
    when the user has MFA and this device may not skip it) or the session and its tokens."""

    async def prepare(user_id: uuid.UUID, tenant_id: uuid.UUID | None) -> _Prepared:
        # Reads only, nothing logged or audited: a tenant that requires SSO leaves the
        # password to its break-glass admins; then the sign-in's risk, and the user's MFA
        # duty and methods. (Deciding the second step stays after the hash: for a user who
        # must enroll it notes when MFA became due, and audits an overdue enrollment.)
        await check_password_sign_in(session, user_id=user_id, tenant_id=tenant_id)
        now = services.clock.now()
        policy = await session_policy(services, tenant_id, session)
        assessment = await signin.assess(
            services, session, user_id=user_id, tenant_id=tenant_id, request=client,
            policy=policy, now=now,
        )  # fmt: skip
        mfa = await mfa_flow.read_counted(services, session, user_id=user_id, tenant_id=tenant_id)
        return _Prepared(now, assessment, mfa)

    # On PostgreSQL these reads run while the password hash is checked (they hold no lock;
    # on SQLite the request's transaction would hold the database's write lock meanwhile).
    overlap = prepare if services.db.writes_in_one_statement else None
    factor, early = await verify_password(
        services, email=email, password=password, tenant=tenant, context=context,
        client=client, meanwhile=overlap,
    )  # fmt: skip
    # What the reads answered, or the refusal they raised, reaches the caller only now that
    # the password has proved right.
    prepared = early.result() if early is not None else await prepare(
        factor.user_id, factor.tenant_id
    )  # fmt: skip
    now, assessment = prepared.now, prepared.assessment
    if assessment.decision == signin.DENY:
        await _refuse_risky(services, factor, assessment, context)
    step = await second_step(
        services, session, factor, assessment, context=context, now=now,
        first_method="password", counted=prepared.mfa,
    )  # fmt: skip
    if isinstance(step, MfaStep):
        return step
    opened = await open_session(
        services,
        session,
        factor,
        context=context,
        client=client,
        assessment=assessment,
        enrollment_only=step,
    )
    return await issue_tokens(services, session, opened)


@dataclass(frozen=True)
class _Prepared:
    """What a password sign-in read about the account besides its password."""

    now: datetime
    assessment: signin.Assessment
    mfa: Counted


async def second_step(
    services: Services,
    session: AsyncSession,
    factor: FirstFactor,
    assessment: signin.Assessment,
    *,
    context: AuditContext,
    now: datetime,
    first_method: str,
    counted: Counted | None = None,
) -> MfaStep | bool:
    """After a first factor (a password, an SSO provider's word): the MFA challenge when the
    user must prove a second factor now (MFA methods, an untrusted device, a risky sign-in),
    else whether the session may only enroll a factor (the policy requires one he lacks)."""
    need = await mfa_flow.needed(
        services,
        session,
        user_id=factor.user_id,
        tenant_id=factor.tenant_id,
        trusted_device=assessment.trusted_device,
        risk_wants_mfa=assessment.decision == signin.REQUIRE_MFA,
        now=now,
        counted=counted,
    )
    if not need.second_step:
        return need.enrollment_only
    return await mfa_flow.begin(
        services,
        session,
        user_id=factor.user_id,
        tenant_id=factor.tenant_id,
        password_hash=factor.password_hash,
        methods=need.methods,
        context=context,
        now=now,
        first_method=first_method,
    )


async def complete_second_step(
    services: Services,
    session: AsyncSession,
    *,
    challenge_id: uuid.UUID,
    method: str,
    code: str,
    context: AuditContext,
    client: SignInRequest,
) -> TokenPair:
    """The sign-in's second step: prove a factor for the challenge, then open the session
    (recording both methods) and issue its tokens."""
    challenge = await mfa_flow.open_challenge(services, challenge_id)
    assert challenge.user_id is not None
    used = await mfa_flow.prove(
        services,
        session,
        challenge=challenge,
        method=method,
        code=code,
        context=context,
        client=throttle_client(services, client, challenge.user_id),
    )
    assert challenge.user_id is not None
    factor = FirstFactor(
        challenge.user_id,
        challenge.tenant_id,
        challenge.first_method,
        challenge.password_hash,
        second=used.method_type,
    )
    opened = await open_session(
        services, session, factor, context=context, client=client, mfa_done=True
    )
    if challenge.first_method == "sso":  # the SSO session now names this session (logout)
        from kanvaro.identity.sso.sign_in import after_second_step

        await after_second_step(session, challenge_id=challenge.id, session_id=opened.id)
    return await issue_tokens(services, session, opened)


async def complete_passkey(
    services: Services,
    session: AsyncSession,
    *,
    challenge_id: uuid.UUID,
    credential: Any,
    context: AuditContext,
    client: SignInRequest,
) -> TokenPair:
    """Passwordless sign-in: a discoverable WebAuthn credential, verified with user
    verification, proves the user (``amr`` ["webauthn"], phishing-resistant multi-factor);
    then the session and its tokens, as after any sign-in."""
    from kanvaro.identity.mfa.webauthn_signin import prove_passkey

    proved = await prove_passkey(
        services, session, challenge_id=challenge_id, credential=credential, context=context
    )
    factor = FirstFactor(proved.user_id, proved.tenant_id, "webauthn", proved.password_hash)
    opened = await open_session(
        services, session, factor, context=context, client=client, mfa_done=True
    )
    return await issue_tokens(services, session, opened)


async def send_second_step_code(
    services: Services, session: AsyncSession, *, challenge_id: uuid.UUID, method: str
) -> None:
    """Have an email or SMS factor send its code for a live sign-in challenge."""
    await mfa_flow.send_code(services, session, challenge_id=challenge_id, method=method)


async def _assess(
    services: Services,
    session: AsyncSession,
    factor: FirstFactor,
    client: SignInRequest,
    policy: SessionPolicy,
    now: datetime,
) -> signin.Assessment:
    return await signin.assess(
        services,
        session,
        user_id=factor.user_id,
        tenant_id=factor.tenant_id,
        request=client,
        policy=policy,
        now=now,
    )


async def verify_password(
    services: Services,
    *,
    email: str,
    password: str,
    tenant: str | None,
    context: AuditContext,
    client: SignInRequest | None = None,
    meanwhile: Callable[[uuid.UUID, uuid.UUID | None], Awaitable[Any]] | None = None,
) -> tuple[FirstFactor, asyncio.Task[Any] | None]:
    """Step 1: the account named by (tenant, email) and its password; the first factor, and
    the finished task of ``meanwhile`` (None without it).

    ``meanwhile(user_id, tenant_id)``, for an account that may sign in, runs while the hash
    is checked (the hash runs in a worker thread and leaves the event loop free), so that its
    reads cost the sign-in no time beyond the hash's. Whatever it answers or raises is kept
    for the caller and only reaches it once the password has proved right; a wrong password
    waits for it to end and throws it away. (It is a few statements against a hash of tens of
    milliseconds; a wrong password is answered after both.)

    The account is read in one autocommit statement and the hash is checked with no lock
    held (``meanwhile``'s reads may begin the caller's transaction; they take no lock).
    Unknown tenant, unknown
    address, an address that cannot exist, a wrong password, a disabled account and a
    suspended tenant all answer the same 401 after the same hashing work; every attempt is
    counted before the check, per (account, client): a device that signed in to this account
    before is counted on its own, so others' failures cannot lock its owner out.
    """
    email = email.strip().lower()
    async with services.db.reader(all_tenants=True) as reader:
        account_row = await _candidate(reader, tenant, email)
    user_id = sql.as_uuid(account_row["id"]) if account_row is not None else None
    tenant_id = sql.uuid_or_none(account_row["tenant_id"]) if account_row is not None else None
    # Counted per account once it is known (so naming the tenant or leaving it out on a
    # single-tenant instance cannot double the guesses), and always before the hash check.
    account = f"user:{user_id}" if user_id is not None else _account_key(tenant, email)
    if client is None:
        client = SignInRequest(context.ip_address, context.user_agent)
    guesser = throttle_client(services, client, user_id)
    verdict = await services.throttle.attempt(account, guesser)
    if verdict.notify_owner and user_id is not None:
        await _notify_owner_of_guessing(services, user_id)
    if not verdict.allowed:
        security_log.warning("login_throttled", ip=context.ip_address, known_device=guesser.known)
        metrics.count_sign_in("throttled")
        raise TooManyRequests(
            "Too many failed sign-in attempts. Try again later.",
            headers={"Retry-After": str(verdict.retry_after)},
        )
    stored_hash = account_row["password_hash"] if account_row is not None else None
    early: asyncio.Task[Any] | None = None
    if meanwhile is not None and user_id is not None and _usable(account_row):
        early = asyncio.ensure_future(meanwhile(user_id, tenant_id))
    try:
        valid, new_hash = await services.hasher.verify_async(password, stored_hash)
    finally:
        if early is not None:  # over before this returns or raises: it uses the caller's session
            await asyncio.wait([early])  # (waits; what it raised stays in the task)
    if not (valid and user_id is not None and _usable(account_row)):
        if early is not None and not early.cancelled():
            early.exception()  # thrown away, with whatever it raised
        reason = "unknown_user" if user_id is None else "bad_password" if not valid else "disabled"
        security_log.info(
            "auth_attempt",
            success=False,
            reason=reason,
            ip=context.ip_address,
            user_id=str(user_id) if user_id else None,
        )
        await record_surviving(
            services,
            action="auth:login:failure",
            category="authentication",
            tenant_id=tenant_id,
            context=AuditContext(user_id, context.ip_address, context.user_agent),
            resource_type="user" if user_id else None,
            resource_id=user_id,
            changes={"reason": reason},
        )
        metrics.count_sign_in("failure")
        raise Unauthorized(INVALID_CREDENTIALS)
    await services.throttle.succeeded(account, guesser)
    return FirstFactor(user_id, tenant_id, "password", stored_hash, new_hash), early


def throttle_client(services: Services, client: SignInRequest, user_id: uuid.UUID | None) -> Client:
    """The throttle's client for an attempt on ``user_id``: its known device, else its address."""
    token = (
        device_cookie.DeviceToken(client.device_secret, client.device_proofs)
        if client.device_secret
        else None
    )
    return device_cookie.throttle_client(services.keyring, token, user_id, client.ip_address)


async def _notify_owner_of_guessing(services: Services, user_id: uuid.UUID) -> None:
    """The account's untrusted clients passed its ceiling (at most once per notice period):
    mail the owner once the request's transaction has ended, from a transaction of its own."""

    async def notify(session: AsyncSession) -> None:
        await alerts.notify_guessing(services, session, user_id=user_id)

    await services.db.after_transaction(notify)


def _account_key(tenant: str | None, email: str) -> str:
    """Attempts are counted per account, and an account is (tenant, address)."""
    return f"{(tenant or '').strip().lower()}\x1f{email}"


async def open_session(
    services: Services,
    session: AsyncSession,
    factor: FirstFactor,
    *,
    context: AuditContext,
    client: SignInRequest,
    assessment: signin.Assessment | None = None,
    mfa_done: bool = False,
    enrollment_only: bool = False,
) -> OpenedSession:
    """Step 2: a session for verified factors, in the caller's transaction (audited).

    The sign-in's risk is assessed (device, network, place) unless the caller did; the
    tenant's policy may refuse it, and a sign-in it wants a second factor for needs one.
    Under the tenant's single-device policy the user's other sessions end. An
    ``enrollment_only`` session may do nothing but set up a second factor."""
    now = services.clock.now()
    policy = await session_policy(services, factor.tenant_id, session)
    if assessment is None:
        assessment = await _assess(services, session, factor, client, policy, now)
    if assessment.decision == signin.DENY or (
        assessment.decision == signin.REQUIRE_MFA and not mfa_done
    ):
        await _refuse_risky(services, factor, assessment, context)
    methods = factor.methods + ([mfa_flow.ENROLLMENT_ONLY] if enrollment_only else [])
    opened_id = uuid.uuid4()
    # Under the account's row lock: deactivated, suspended or re-passworded since step 1
    # matches nothing and means no session.
    granted = await sql.sign_in_and_open_session(
        session,
        user_id=factor.user_id,
        verified_hash=factor.password_hash,
        new_hash=factor.new_hash,  # an upgrade of an older hash, or None
        new_session={
            "session_id": opened_id,
            "device_id": assessment.device_id,
            "device_info": assessment.device_info,
            "ip_address": context.ip_address,
            "auth_methods": methods,
            "expires_at": now + policy.absolute_timeout,
            "risk_score": assessment.risk_score,
            "risk_reasons": list(assessment.risk_reasons),
            "location": assessment.location,
            "network": assessment.network,
        },
        now=now,
    )
    if granted is None:
        metrics.count_sign_in("failure")
        raise Unauthorized(INVALID_CREDENTIALS)
    tenant_id = sql.uuid_or_none(granted["tenant_id"])
    opened = OpenedSession(
        opened_id, factor.user_id, tenant_id, _device_token(services, client, assessment, factor)
    )
    await audit.record(
        session,
        action="auth:login:success",
        category="authentication",
        tenant_id=opened.tenant_id,
        context=AuditContext(opened.user_id, context.ip_address, context.user_agent),
        resource_type="session",
        resource_id=opened.id,
        changes={
            "methods": methods,
            "rehashed": bool(factor.new_hash),
            "deviceId": assessment.device_id,
            "riskScore": assessment.risk_score,
            "riskReasons": list(assessment.risk_reasons),
        },
    )
    if policy.single_device_only:
        await end_other_sessions_for_single_device(services, session, opened, context=context)
    await signin.after_open(
        services,
        session,
        session_id=opened.id,
        user_id=opened.user_id,
        tenant_id=opened.tenant_id,
        assessment=assessment,
        policy=policy,
        now=now,
    )
    security_log.info(
        "auth_attempt", success=True, user_id=str(opened.user_id), ip=context.ip_address
    )
    on_commit(session, _count_success)  # a sign-in whose transaction rolls back did not happen
    return opened


def _device_token(
    services: Services,
    client: SignInRequest,
    assessment: signin.Assessment,
    factor: FirstFactor,
) -> str | None:
    """The device token to hand out after a full sign-in: the device's secret (new, or the one
    presented) with this account's proof added; None when the client already holds both."""
    secret = assessment.device_secret or client.device_secret
    if secret is None:
        return None
    presented = (
        device_cookie.DeviceToken(client.device_secret, client.device_proofs)
        if client.device_secret
        else None
    )
    return device_cookie.after_sign_in(services.keyring, presented, secret, factor.user_id)


async def session_policy(
    services: Services, tenant_id: uuid.UUID | None, db: AsyncSession | None = None
) -> SessionPolicy:
    """The tenant's session policy (cached). Inside a transaction, pass its session: a miss
    then reads through it (on SQLite a second connection would wait for this transaction's
    write lock)."""
    if db is not None:
        return await services.session_policies.get(tenant_id, lambda: session_reader(db))
    return await services.session_policies.get(
        tenant_id, lambda: services.db.reader(tenant_id=tenant_id)
    )


async def _refuse_risky(
    services: Services, factor: FirstFactor, assessment: signin.Assessment, context: AuditContext
) -> None:
    """A sign-in the policy refuses for its risk: audited, and the caller learns why (the
    password was right, so there is nothing left to hide). "Require MFA" refuses only where no
    second factor was proved (the user has none): failing closed."""
    await record_surviving(
        services,
        action="auth:login:risk_refused",
        category="authentication",
        tenant_id=factor.tenant_id,
        context=AuditContext(factor.user_id, context.ip_address, context.user_agent),
        resource_type="user",
        resource_id=factor.user_id,
        changes={
            "decision": assessment.decision,
            "riskScore": assessment.risk_score,
            "riskReasons": list(assessment.risk_reasons),
        },
    )
    metrics.count_sign_in("failure")
    if assessment.decision == signin.REQUIRE_MFA:
        raise MfaRequired("This sign-in needs a second factor, and none is set up for it.")
    raise SignInRefused("This sign-in was refused for its risk.")


async def end_other_sessions_for_single_device(
    services: Services, session: AsyncSession, opened: OpenedSession, *, context: AuditContext
) -> None:
    """Single device only: the new sign-in ends the user's other sessions; each of them is
    told so on its next request (the 401 names the reason) and the user gets a mail."""
    ended = await revoke_other_sessions(
        session, opened.user_id, keep=opened.id, reason="single_device"
    )
    if not ended:
        return
    await audit.record(
        session,
        action="auth:session:revoke",
        category="authentication",
        tenant_id=opened.tenant_id,
        context=AuditContext(opened.user_id, context.ip_address, context.user_agent),
        resource_type="user",
        resource_id=opened.user_id,
        changes={"reason": "single_device", "sessions": [str(i) for i in ended]},
    )
    await signin.notify_single_device(services, session, opened.user_id, len(ended))


async def _count_success() -> None:
    metrics.count_sign_in("success")


async def issue_tokens(
    services: Services, session: AsyncSession, opened: OpenedSession
) -> TokenPair:
    """Step 3: an access and a refresh token for an open session."""
    policy = await session_policy(services, opened.tenant_id, session)
    signed = _sign(
        services,
        opened,
        started=int(services.tokens.clock()),
        absolute_seconds=int(policy.absolute_timeout.total_seconds()),
    )
    await sql.issue_first_token(
        session,
        new_jti=signed.refresh_jti,
        new_hash=signed.refresh_hash,
        access_hash=signed.access_hash,
        session_id=opened.id,
        tenant_id=opened.tenant_id,
        issued_at=signed.issued_at,
        expires_at=signed.expires_at,
        now=services.clock.now(),
    )
    return signed.pair


async def account_named(reader: Reader, tenant_slug: str | None, email: str) -> Any:
    """The account (tenant, email) names, as sign-in finds it (password reset uses it too)."""
    return await _candidate(reader, tenant_slug, email)


def usable_account(account: Any) -> bool:
    """Whether that account may sign in (enabled, of an active tenant)."""
    return _usable(account)


def _usable(account: Any) -> bool:
    """An enabled account of an active tenant, or an enabled super admin (no tenant)."""
    if account is None or not account["is_active"]:
        return False
    if account["tenant_id"] is None:
        return bool(account["is_super_admin"])
    return account["tenant_status"] == "active"


async def _candidate(reader: Reader, tenant_slug: str | None, email: str) -> Any:
    """The account that (tenant, email) names, or None.

    With a tenant slug: that tenant's member. Without one: the instance super admin of that
    address, else the member of the only tenant, if the instance has exactly one. An address
    that is no valid email address names nobody.
    """
    try:
        email = normalize_email(email)
    except InvalidEmail:
        return None
    if tenant_slug is not None:
        slug = tenant_slug.strip().lower()
        return await sql.read(reader, sql.ACCOUNT_IN_TENANT, slug=slug, email=email)
    return await sql.read(reader, sql.ACCOUNT_WITHOUT_TENANT, email=email)


INVALID_REFRESH = "Invalid refresh token."


async def refresh(
    services: Services, session: AsyncSession | None, *, refresh_token: str, context: AuditContext
) -> TokenPair:
    """Spend a refresh token and issue the next pair (audited).

    A spent token presented again ends its whole session, unless it comes back within the
    policy's grace window while its successor is still unused: two tabs refreshing at once
    then both get the same new pair. Everything is decided from the database (no memory of
    past refreshes in the process), so a restart changes nothing.

    Only refused refreshes are counted per client address: a token that verifies was signed
    here and can be spent once, so a refresh that succeeds guesses nothing and costs no round
    trip to the throttle's store; past the limit, refused ones are answered 429.

    Without a ``session`` (the API's route), one is opened only for a path that needs it: a
    rotation as one PostgreSQL statement needs none."""
    try:
        return await _refresh(services, session, refresh_token=refresh_token, context=context)
    except Unauthorized:
        verdict = await services.throttle.refused_refresh(context.ip_address)
        if not verdict.allowed:
            security_log.warning("refresh_throttled", ip=context.ip_address)
            raise TooManyRequests(
                "Too many refused refreshes from this address. Try again later.",
                headers={"Retry-After": str(verdict.retry_after)},
            ) from None
        raise


async def _in_a_session(
    services: Services, *, refresh_token: str, context: AuditContext, tried: bool
) -> TokenPair:
    async with services.db.collecting_deferred(), services.db.session(all_tenants=True) as db:
        return await _refresh(
            services, db, refresh_token=refresh_token, context=context, tried=tried
        )


async def _refresh(
    services: Services,
    session: AsyncSession | None,
    *,
    refresh_token: str,
    context: AuditContext,
    tried: bool = False,
) -> TokenPair:
    """``tried``: the one statement ran and issued nothing; only why is left to find out."""
    try:
        claims = await services.verify_token(refresh_token, REFRESH)
        # The session a token names never changes its user or tenant.
        opened = OpenedSession(
            sql.as_uuid(claims["sid"]),
            sql.as_uuid(claims["sub"]),
            sql.uuid_or_none(claims.get("tid")),
        )
        started = int(claims.get("sst", claims["iat"]))
        jti = str(claims["jti"])
    except (TokenError, KeyError, ValueError, TypeError):
        raise Unauthorized(INVALID_REFRESH) from None
    # PostgreSQL, nothing begun in the request's session: the rotation and its audit entry are
    # one statement that commits on its own (no ORM unit of work, no BEGIN/COMMIT).
    one_statement = (
        not tried
        and services.db.writes_in_one_statement
        and (session is None or not session.in_transaction())
    )
    if session is None and not one_statement:
        return await _in_a_session(
            services, refresh_token=refresh_token, context=context, tried=tried
        )
    policy = await session_policy(services, opened.tenant_id, None if one_statement else session)
    now = services.clock.now()
    digest = token_hash(refresh_token)
    absolute = int(policy.absolute_timeout.total_seconds())
    touch = {
        "session_id": opened.id,
        "user_id": opened.user_id,
        "tenant_id": opened.tenant_id,
        "now": now,
        "started_after": now - policy.absolute_timeout,
        "active_after": now - policy.idle_timeout,
    }
    if not policy.refresh_token_rotation:
        if session is None:
            return await _in_a_session(
                services, refresh_token=refresh_token, context=context, tried=False
            )
        return await _refresh_without_rotation(
            services, session, opened, claims, digest, touch, refresh_token, context, policy
        )
    signed = _sign(services, opened, started=started, absolute_seconds=absolute, parent_jti=jti)
    steps = {
        "spend": {"jti": jti, "token_hash": digest, "session_id": opened.id, "now": now},
        "touch": {**touch, "access_hash": signed.access_hash},
        "issue": {
            "new_jti": signed.refresh_jti,
            "new_hash": signed.refresh_hash,
            "issued_at": signed.issued_at,
            "expires_at": signed.expires_at,
        },
    }
    if one_statement:
        if await _rotate_in_one_statement(services, opened, steps, context):
            return signed.pair
        if session is None:
            return await _in_a_session(
                services, refresh_token=refresh_token, context=context, tried=True
            )
    if one_statement or tried:  # the statement issued nothing, so it spent nothing
        rotation = sql.Rotation(spent=False, issued=False)
    else:
        rotation = await sql.rotate_refresh_token(session, **steps)
    if not rotation.spent:
        return await _not_spent(
            services, session, opened, jti=jti, digest=digest, started=started, policy=policy,
            now=now, context=context,
        )  # fmt: skip
    # Any refusal from here on rolls the spend back with the request's transaction.
    if not rotation.issued:
        raise Unauthorized("Session ended.")
    if sql.uuid_or_none(rotation.tenant_id) != opened.tenant_id:
        raise Unauthorized(INVALID_REFRESH)
    await _record_refresh(session, opened, context)
    return signed.pair


async def _rotate_in_one_statement(
    services: Services, opened: OpenedSession, steps: dict[str, Any], context: AuditContext
) -> bool:
    """The rotation and its ``auth:token:refresh`` entry as one PostgreSQL statement; whether
    the next token was issued (when not, nothing was written)."""
    pending = audit.pending_entry(**_refresh_entry(opened, context))
    db = services.db
    tenant_id = opened.tenant_id
    async with db.statement_writer(tenant_id=tenant_id, all_tenants=tenant_id is None) as writer:
        issued = await sql.rotate_and_record(writer, **steps, entry=pending.binds())
    db.outage.up()  # a statement committed: the database answers again
    if issued:
        await run_after_commit([pending.after_commit(db.engine)])
    return issued


def _refresh_entry(
    opened: OpenedSession, context: AuditContext, changes: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "action": "auth:token:refresh",
        "category": "authentication",
        "tenant_id": opened.tenant_id,
        "context": AuditContext(opened.user_id, context.ip_address, context.user_agent),
        "resource_type": "session",
        "resource_id": opened.id,
        "changes": changes,
    }


async def _record_refresh(
    session: AsyncSession,
    opened: OpenedSession,
    context: AuditContext,
    changes: dict[str, Any] | None = None,
) -> None:
    await audit.record(session, **_refresh_entry(opened, context, changes))


async def _refresh_without_rotation(
    services: Services,
    session: AsyncSession,
    opened: OpenedSession,
    claims: dict[str, Any],
    digest: str,
    touch: dict[str, Any],
    refresh_token: str,
    context: AuditContext,
    policy: SessionPolicy,
) -> TokenPair:
    """The tenant switched rotation off: the refresh token stays valid until it expires (or
    its session ends); only a new access token is issued."""
    access, _ = services.tokens.issue(
        ACCESS, {**opened.claims(), "sst": int(claims.get("sst", claims["iat"]))}
    )
    touched = await sql.row(
        session,
        sql.TOUCH_WITHOUT_ROTATION,
        jti=str(claims["jti"]),
        token_hash=digest,
        access_hash=token_hash(access),
        new_hash=None,
        **touch,
    )
    if touched is None:
        raise Unauthorized(INVALID_REFRESH)
    await _record_refresh(session, opened, context, {"rotated": False})
    return TokenPair(access, refresh_token, services.tokens.access_ttl, opened.id)


async def _not_spent(
    services: Services,
    session: AsyncSession,
    opened: OpenedSession,
    *,
    jti: str,
    digest: str,
    started: int,
    policy: SessionPolicy,
    now: datetime,
    context: AuditContext,
) -> TokenPair:
    """Why a refresh token spent nothing: unknown or not ours (invalid); spent a moment ago by
    a concurrent refresh (within the grace window, while the successor is unused: the same
    new pair again); or spent before (reuse: someone else holds the family, which then ends
    for everyone)."""
    state = await sql.row(
        session,
        sql.REFRESH_TOKEN_STATE,
        jti=jti,
        successor_jti=_derived_jti(services, jti, "refresh"),
    )
    if state is None or state["token_hash"] != digest:
        raise Unauthorized(INVALID_REFRESH)
    if state["used_at"] is None:  # unspent, but its session refused it (ended, timed out)
        raise Unauthorized("Session ended.")
    spent_at = _aware(state["used_at"])
    grace = timedelta(seconds=policy.refresh_grace_seconds)
    if (
        state["session_active"]
        and state["successor_hash"] is not None
        and state["successor_used_at"] is None
        # (negative when the racing request read its clock first)
        and now - spent_at <= grace
    ):
        again = _sign(
            services,
            opened,
            started=started,
            absolute_seconds=int(policy.absolute_timeout.total_seconds()),
            parent_jti=jti,
            issued_at=int(_aware(state["successor_issued_at"]).timestamp()),
            refresh_expires_at=int(_aware(state["successor_expires_at"]).timestamp()),
        )
        if again.refresh_hash == state["successor_hash"]:
            await _record_refresh(session, opened, context, {"concurrent": True})
            return again.pair
        # Signed under another key since (a rotation in between): not the same pair.
        raise Unauthorized("Refresh token already used; use the newest one.")
    await _end_reused_family(
        services,
        session_id=sql.as_uuid(state["id"]),
        user_id=sql.as_uuid(state["user_id"]),
        tenant_id=sql.uuid_or_none(state["tenant_id"]),
        context=context,
    )
    raise Unauthorized("Refresh token reuse detected; the session has been ended.")


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


async def _end_reused_family(
    services: Services,
    *,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID | None,
    context: AuditContext,
) -> None:
    security_log.warning(
        "refresh_token_reuse",
        user_id=str(user_id),
        session_id=str(session_id),
        ip=context.ip_address,
    )

    async def end(session: AsyncSession) -> None:
        await revoke_session(session, session_id, reason="refresh_token_reuse")

    await services.db.after_transaction(end)
    await record_surviving(
        services,
        action="auth:token:reuse",
        category="authentication",
        tenant_id=tenant_id,
        context=AuditContext(user_id, context.ip_address, context.user_agent),
        resource_type="session",
        resource_id=session_id,
    )


async def revoke_session(session: AsyncSession, session_id: uuid.UUID, *, reason: str) -> bool:
    """End one session; False when it was already ended (or is not visible here)."""
    result = await session.execute(
        update(UserSession)
        .where(UserSession.id == session_id, UserSession.is_active.is_(True))
        .values(is_active=False, revoked_at=utcnow(), revoked_reason=reason)
    )
    return result.rowcount == 1


async def revoke_user_sessions(session: AsyncSession, user_id: uuid.UUID, *, reason: str) -> None:
    await session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.is_active.is_(True))
        .values(is_active=False, revoked_at=utcnow(), revoked_reason=reason)
    )


async def revoke_other_sessions(
    session: AsyncSession, user_id: uuid.UUID, *, keep: uuid.UUID, reason: str
) -> list[uuid.UUID]:
    """End the user's sessions but ``keep``; the ids of those that were open."""
    result = await session.execute(
        update(UserSession)
        .where(
            UserSession.user_id == user_id,
            UserSession.is_active.is_(True),
            UserSession.id != keep,
        )
        .values(is_active=False, revoked_at=utcnow(), revoked_reason=reason)
        .returning(UserSession.id)
    )
    return [row[0] for row in result]
