"""What the email and SMS factors share: enrolling an address or number by sending it a code
(``setup``) and proving it (``confirm``), and the sign-in's second step with a code sent to a
verified one (``send``, ``verify``). A subclass says how to check an identifier, which one an
account has by default, and how a code is delivered.

Enrollment keeps at most one pending (unverified) method per kind and user; asking again for
the same identifier resends to it (at most once a minute), another identifier replaces it. Its
challenge (purpose ``setup``) lives 30 minutes and allows 5 attempts over all its codes.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.db import end_read_only_prefix
from kanvaro.errors import Conflict, TooManyRequests, Unauthorized, Unprocessable
from kanvaro.identity.mfa import backup_codes, codes, flow
from kanvaro.identity.mfa.models import MfaChallenge, MfaMethod

if TYPE_CHECKING:
    from kanvaro.acting import Acting
    from kanvaro.services import Services

security_log = structlog.get_logger("kanvaro.security")

SETUP_TTL = timedelta(minutes=30)
# New enrollments (each a code to a new address or number) per user and hour: a signed-in
# account must not become a way to mail or text anyone at will.
SETUPS_PER_HOUR = 10
SIGN_IN, SETUP = "sign_in", "setup"


def identifier_problem(message: str) -> Unprocessable:
    return Unprocessable(
        message, errors=[{"field": "identifier", "in": "body", "message": message}]
    )


def code_problem(message: str) -> Unprocessable:
    return Unprocessable(message, errors=[{"field": "code", "in": "body", "message": message}])


class CodeFactor(ABC):
    name: str
    what: str  # what the identifier is, in words ("email address")

    # -- what a kind of factor says ---------------------------------------------------------

    @abstractmethod
    def normalize(self, services: Services, value: str) -> str:
        """The identifier as stored; :func:`identifier_problem` when it is not acceptable."""

    @abstractmethod
    async def default_identifier(self, ctx: Acting) -> str | None:
        """The account's own address or number, if it has one."""

    @abstractmethod
    def check_ready(self, services: Services) -> None:
        """Raise (503) when this instance cannot deliver codes of this kind."""

    @abstractmethod
    async def deliver(self, services: Services, to: str, code: str, *, purpose: str) -> None:
        """Send ``code``; :class:`codes.CodeNotSent` when the transport refuses it."""

    @abstractmethod
    def mask(self, identifier: str) -> str:
        """Enough of the identifier for the user to recognise it."""

    # -- enrollment -------------------------------------------------------------------------

    async def setup(self, ctx: Acting, body: dict[str, Any]) -> dict[str, Any]:
        services, db = ctx.services, ctx.db
        now = services.clock.now()
        raw = body.get("identifier")
        identifier = self.normalize(services, raw) if raw else await self.default_identifier(ctx)
        if identifier is None:
            raise identifier_problem(f"Give the {self.what} the codes should go to.")
        self.check_ready(services)
        method = await self._pending(ctx, identifier, body.get("name"))
        challenge_id = await self._setup_challenge(ctx, method.id, now)
        code = await codes.reserve(
            services, db, challenge_id=challenge_id, method_id=method.id, now=now
        )
        await self.deliver(services, identifier, code, purpose=SETUP)
        await ctx.record(
            "auth:mfa:setup",
            category="authentication",
            resource_type="mfa_method",
            resource_id=method.id,
            changes={"method": self.name},
        )
        return {
            "methodId": str(method.id),
            "method": self.name,
            "sentTo": self.mask(identifier),
            "codeExpiresInSeconds": int(codes.CODE_TTL.total_seconds()),
        }

    async def _pending(self, ctx: Acting, identifier: str, name: str | None) -> MfaMethod:
        """The user's unverified method for ``identifier`` (others of this kind are dropped);
        409 when ``identifier`` is set up already. (The challenges of dropped ones can no
        longer be proved: confirm finds its challenge through a pending method.)"""
        db, principal = ctx.db, ctx.me()
        mine = (
            await db.execute(
                select(MfaMethod).where(
                    MfaMethod.user_id == principal.user_id,
                    MfaMethod.method_type == self.name,
                )
            )
        ).scalars()
        pending = None
        for method in mine:
            if method.identifier != identifier:
                if method.verified_at is None:
                    await db.delete(method)
                continue
            if method.verified_at is not None:
                raise Conflict(f"This {self.what} is set up already.")
            pending = method
        if pending is None:
            pending = MfaMethod(
                tenant_id=principal.tenant_id,
                user_id=principal.user_id,
                method_type=self.name,
                device_name=name,
            )
            pending.identifier = identifier
            db.add(pending)
        elif name:
            pending.device_name = name
        await db.flush()
        return pending

    async def _setup_challenge(self, ctx: Acting, method_id: uuid.UUID, now: datetime) -> uuid.UUID:
        live = await self._live_setup_challenge(ctx.db, ctx.me().user_id, method_id, now)
        if live is not None:
            return live
        started = await ctx.db.scalar(
            select(func.count())
            .select_from(MfaChallenge)
            .where(
                MfaChallenge.user_id == ctx.me().user_id,
                MfaChallenge.purpose == SETUP,
                MfaChallenge.created_at > now - timedelta(hours=1),
            )
        )
        if (started or 0) >= SETUPS_PER_HOUR:
            raise TooManyRequests(
                "Too many enrollments started in the last hour; try again later.",
                headers={"Retry-After": "3600"},
            )
        challenge = MfaChallenge(
            tenant_id=ctx.me().tenant_id,
            user_id=ctx.me().user_id,
            purpose=SETUP,
            expires_at=now + SETUP_TTL,
            code_method_id=method_id,
        )
        ctx.db.add(challenge)
        await ctx.db.flush()
        return challenge.id

    @staticmethod
    async def _live_setup_challenge(
        db: AsyncSession, user_id: uuid.UUID, method_id: uuid.UUID, now: datetime
    ) -> uuid.UUID | None:
        return await db.scalar(
            select(MfaChallenge.id)
            .where(
                MfaChallenge.user_id == user_id,
                MfaChallenge.purpose == SETUP,
                MfaChallenge.code_method_id == method_id,
                MfaChallenge.used_at.is_(None),
                MfaChallenge.expires_at > now,
                MfaChallenge.attempts < flow.MAX_ATTEMPTS,
            )
            .order_by(MfaChallenge.created_at.desc())
            .limit(1)
        )

    async def confirm(self, ctx: Acting, body: dict[str, Any]) -> dict[str, Any]:
        services, db, principal = ctx.services, ctx.db, ctx.me()
        now = services.clock.now()
        method = await self._method_being_enrolled(db, principal.user_id, body.get("methodId"))
        challenge_id = await self._live_setup_challenge(db, principal.user_id, method.id, now)
        if challenge_id is None:
            raise code_problem("This code can no longer be used; ask for a new one.")
        verdict = await services.throttle.attempt_mfa(str(principal.user_id))
        if not verdict.allowed:
            raise TooManyRequests(
                "Too many wrong codes. Try again later.",
                headers={"Retry-After": str(verdict.retry_after)},
            )
        # The attempt is counted in a transaction of its own (it must survive a wrong code's
        # rollback); on SQLite that needs this request's read-only start closed first.
        await end_read_only_prefix(db)
        try:
            challenge = await flow.open_challenge(services, challenge_id, purpose=SETUP)
        except Unauthorized:
            raise code_problem("This code can no longer be used; ask for a new one.") from None
        used = await codes.accept(services, db, challenge=challenge, code=body["code"], now=now)
        if used != method.id:
            await ctx.record_after_rollback(
                "auth:mfa:failure",
                category="authentication",
                resource_type="mfa_method",
                resource_id=method.id,
                changes={"method": self.name, "step": SETUP},
            )
            raise code_problem(flow.WRONG_CODE)
        if not await flow.spend(db, challenge, now):
            raise code_problem("This code can no longer be used; ask for a new one.")
        proved = await db.get(MfaMethod, method.id)
        assert proved is not None
        proved.verified_at = now
        fresh = await backup_codes.activate(ctx)
        await flow.mark_enabled(ctx)
        await ctx.record(
            "auth:mfa:enroll",
            category="authentication",
            resource_type="mfa_method",
            resource_id=method.id,
            changes={"method": self.name},
        )
        await services.throttle.mfa_succeeded(str(principal.user_id))
        answer: dict[str, Any] = {"methodId": str(method.id), "method": self.name}
        if fresh:  # the first method: the backup codes, shown this once
            answer["backupCodes"] = fresh
        return answer

    async def _method_being_enrolled(
        self, db: AsyncSession, user_id: uuid.UUID, method_id: str | None
    ) -> MfaMethod:
        query = select(MfaMethod).where(
            MfaMethod.user_id == user_id,
            MfaMethod.method_type == self.name,
            MfaMethod.verified_at.is_(None),
        )
        if method_id is not None:
            query = query.where(MfaMethod.id == uuid.UUID(str(method_id)))
        found = (
            await db.execute(query.order_by(MfaMethod.created_at.desc()).limit(1))
        ).scalar_one_or_none()
        if found is None:
            field = "methodId" if method_id is not None else "method"
            message = "no enrollment of this method is in progress; start with setup"
            raise Unprocessable(
                "No enrollment of this method is in progress; start with setup.",
                errors=[{"field": field, "in": "body", "message": message}],
            )
        return found

    # -- the sign-in's second step ----------------------------------------------------------

    async def send(
        self,
        services: Services,
        db: AsyncSession,
        *,
        challenge: MfaChallenge,
        user_id: uuid.UUID,
        now: datetime,
    ) -> None:
        method = await self._verified_method(db, user_id)
        if method is None or method.identifier is None:
            raise Unprocessable(
                "No verified method of this kind.",
                errors=[{"field": "method", "in": "body", "message": "not set up"}],
            )
        self.check_ready(services)
        code = await codes.reserve(
            services, db, challenge_id=challenge.id, method_id=method.id, now=now
        )
        await self.deliver(services, method.identifier, code, purpose=SIGN_IN)
        security_log.info("mfa_code_sent", user_id=str(user_id), method=self.name)

    async def _verified_method(self, db: AsyncSession, user_id: uuid.UUID) -> MfaMethod | None:
        return (
            await db.execute(
                select(MfaMethod)
                .where(
                    MfaMethod.user_id == user_id,
                    MfaMethod.method_type == self.name,
                    MfaMethod.is_enabled.is_(True),
                    MfaMethod.verified_at.is_not(None),
                )
                .order_by(MfaMethod.is_primary.desc(), MfaMethod.verified_at.desc())
                .limit(1)
            )
        ).scalar_one_or_none()

    async def verify(
        self,
        services: Services,
        db: AsyncSession,
        *,
        challenge: MfaChallenge,
        user_id: uuid.UUID,
        code: str,
        now: datetime,
    ) -> MfaMethod | None:
        method_id = await codes.accept(services, db, challenge=challenge, code=code, now=now)
        if method_id is None:
            return None
        method = await db.get(MfaMethod, method_id)
        if (
            method is None
            or method.user_id != user_id
            or method.method_type != self.name
            or not method.is_enabled
            or method.verified_at is None
        ):
            return None
        return method
