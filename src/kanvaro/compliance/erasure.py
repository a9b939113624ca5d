"""Erase a person (GDPR art. 17) and keep the organisation's records.

The seed deletes every project and task the person created; here the person is anonymised
instead: the account row stays, renamed to a unique tombstone (``erased-<32 hex>``), so
every project, task, comment, time entry, budget entry and invoice that names the account
keeps its reference and now points at the tombstone. In one transaction, with its audit
entry:

* the profile is replaced by the tombstone, the password and phone dropped, the account
  deactivated;
* every session ends (and loses its IP, device and place), devices and invitations go;
* MFA methods, backup codes, open challenges and the MFA configuration go, and SSO links;
* the SCIM provisioning record loses ``userName``, ``externalId`` and ``displayName`` (the
  tombstone takes their place) and is marked deleted, so SCIM answers 404 for the person
  (RFC 7644 §3.6: a deleted resource is not found) and an identity provider provisioning
  the same ``userName`` again gets a new account, never the tombstone; a person SCIM never
  provisioned gets such a deleted record too. SCIM group memberships go;
* the person's data key lineage is shredded (step 1: material dropped, intent recorded; the
  KEK itself is destroyed after commit by ``crypto.shredding.resume_shreds``, or by key
  maintenance if the process stops in between);
* the content of audit entries by or about the person is erased through the content digest
  (``audit_content``), except financial entries, which the law makes the organisation keep
  (art. 17(3)(b)); the chain stays verifiable;
* a linked data subject request is completed.

A legal hold on the person, on ``users`` or on the whole tenant refuses it (409
``legal-hold``). Erasing oneself is refused (the account would erase the caller's own
access mid-request); the super admin is not erased this way.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from sqlalchemy import delete, or_, select, update

from kanvaro.acting import Acting
from kanvaro.audit import sequencer
from kanvaro.audit.models import AuditLog
from kanvaro.audit.service import chain_for
from kanvaro.compliance import audit_content
from kanvaro.compliance.models import DataSubjectRequest, LegalHold, UserErasure
from kanvaro.crypto import shredding
from kanvaro.db import Base, on_commit
from kanvaro.errors import Conflict, NotFound, Unprocessable
from kanvaro.identity.mfa.models import MfaBackupCode, MfaChallenge, MfaConfiguration, MfaMethod
from kanvaro.identity.models import Invitation, User, UserSession
from kanvaro.identity.scim.models import ScimUser
from kanvaro.identity.sessions.models import TrustedDevice

ERASED = "erased"  # revoked_reason of the sessions an erasure ends
TOMBSTONE_DOMAIN = "erased.invalid"  # RFC 2606: can never be a real address
KEPT_CATEGORIES = ("financial",)
# Tables of other packages linked to a person, found by name so that compliance depends on
# no package's internals (SSO is optional).
LINKED_TABLES = ("sso_sessions", "sso_identities", "scim_group_members")


class LegalHoldConflict(Conflict):
    type_suffix = "legal-hold"


def new_tombstone() -> str:
    return f"erased-{secrets.token_hex(16)}"


async def active_holds(
    ctx: Acting, *, user_id: uuid.UUID | None, resource_type: str | None
) -> list[LegalHold]:
    """Holds in force that cover this person (or this resource type): his own, the resource
    type's, or the tenant-wide ones (neither named)."""
    covers = [(LegalHold.user_id.is_(None)) & (LegalHold.resource_type.is_(None))]
    if user_id is not None:
        covers.append(LegalHold.user_id == user_id)
    if resource_type is not None:
        covers.append((LegalHold.user_id.is_(None)) & (LegalHold.resource_type == resource_type))
    stmt = select(LegalHold).where(LegalHold.released_at.is_(None), or_(*covers))
    return list((await ctx.db.execute(stmt)).scalars())


async def _audit_entries(ctx: Acting, user_id: uuid.UUID) -> list[uuid.UUID]:
    chain = chain_for(ctx.tenant_id)
    await sequencer.settle(ctx.db, chain)  # entries still pending get their place first
    about = (AuditLog.resource_type == "user") & (AuditLog.resource_id == str(user_id))
    stmt = select(AuditLog.id).where(
        AuditLog.chain_id == chain,
        or_(AuditLog.actor_id == user_id, about),
        AuditLog.category.not_in(KEPT_CATEGORIES),
        AuditLog.content_salt.is_not(None),
    )
    return list((await ctx.db.execute(stmt)).scalars())


async def _drop_linked(ctx: Acting, user_id: uuid.UUID) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in LINKED_TABLES:
        table = Base.metadata.tables.get(name)
        if table is None or "user_id" not in table.c:
            continue
        stmt = delete(table).where(table.c.user_id == user_id)
        if "tenant_id" in table.c:
            stmt = stmt.where(table.c.tenant_id == ctx.tenant_id)
        counts[name] = (await ctx.db.execute(stmt)).rowcount or 0
    return counts


async def _scim_tombstone(ctx: Acting, user_id: uuid.UUID, tombstone: str) -> bool:
    """The person's SCIM record holds nothing personal and is deleted for SCIM; returns
    whether SCIM had provisioned him."""
    now = ctx.services.clock.now()
    link = await ctx.db.get(ScimUser, user_id)
    provisioned = link is not None
    if link is None:
        link = ScimUser(user_id=user_id, tenant_id=ctx.tenant_id, manages_role=False)
        ctx.db.add(link)
    link.user_name = link.user_name_key = tombstone
    link.external_id = link.display_name = None
    link.manages_role = False
    link.deleted_at = link.deleted_at or now
    await ctx.db.flush()
    return provisioned


async def _end_access(ctx: Acting, user_id: uuid.UUID) -> dict[str, int]:
    now = ctx.services.clock.now()
    db = ctx.db
    ended = await db.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.is_active.is_(True))
        .values(is_active=False, revoked_at=now, revoked_reason=ERASED)
    )
    # Ended sessions stay as the organisation's sign-in record, without where and on what.
    await db.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id)
        .values(ip_address=None, device_info={}, location=None, network=None)
    )
    counts = {"sessionsEnded": ended.rowcount or 0}
    for name, model in (
        ("mfaMethods", MfaMethod),
        ("backupCodes", MfaBackupCode),
        ("mfaChallenges", MfaChallenge),
        ("mfaConfiguration", MfaConfiguration),
        ("devices", TrustedDevice),
        ("invitations", Invitation),
    ):
        result = await db.execute(delete(model).where(model.user_id == user_id))
        counts[name] = result.rowcount or 0
    return counts


async def erase_user(
    ctx: Acting, user_id: uuid.UUID, *, confirm_email: str, request_id: uuid.UUID | None
) -> dict[str, Any]:
    """The erasure action (see the module's docstring); returns its summary."""
    if ctx.actor_id == user_id:
        raise Conflict("You cannot erase your own account; another administrator can.")
    user = (
        await ctx.db.execute(select(User).where(User.id == user_id).with_for_update())
    ).scalar_one_or_none()
    if user is None or user.tenant_id is None:
        raise NotFound("No such user.")
    done = select(UserErasure.id).where(UserErasure.user_id == user_id)
    if (await ctx.db.execute(done)).first() is not None:
        raise Conflict("This person has been erased already.")
    if confirm_email.strip().lower() != user.email.lower():
        # A typed confirmation: an erasure cannot be undone.
        raise Unprocessable(
            "confirmEmail does not match the person's address.",
            errors=[{"field": "confirmEmail", "message": "does not match"}],
        )
    request = None
    if request_id is not None:
        request = await ctx.db.get(DataSubjectRequest, request_id)
        if request is None or request.subject_user_id != user_id:
            raise Unprocessable(
                "No erasure request of this person has that id.",
                errors=[{"field": "requestId", "message": "unknown request"}],
            )
    holds = await active_holds(ctx, user_id=user_id, resource_type="users")
    if holds:
        raise LegalHoldConflict(
            "A legal hold keeps this person's data; release it before erasing.",
            legalHolds=sorted(str(h.id) for h in holds),
        )

    tombstone = new_tombstone()
    now = ctx.services.clock.now()
    user.email = f"{tombstone}@{TOMBSTONE_DOMAIN}"
    user.first_name = "Erased"
    user.last_name = tombstone[:50]
    user.phone = None
    user.password_hash = None
    user.is_active = False
    user.deactivated_at = user.deactivated_at or now
    user.updated_by = ctx.actor_id
    await ctx.db.flush()

    summary: dict[str, Any] = {"userId": str(user_id), "tombstone": tombstone}
    summary |= await _end_access(ctx, user_id)
    summary["linked"] = await _drop_linked(ctx, user_id)
    summary["scimProvisioned"] = await _scim_tombstone(ctx, user_id, tombstone)
    entries = await _audit_entries(ctx, user_id)
    summary["auditEntriesErased"] = await audit_content.erase(ctx.db, entries)
    keyring = ctx.services.keyring
    summary["destroyedKeys"] = await shredding.intend_user_shred(
        ctx.db, keyring, user_id=user_id, tenant_id=ctx.tenant_id
    )
    ctx.db.add(
        UserErasure(
            user_id=user_id,
            tombstone=tombstone,
            erased_by=ctx.actor_id,
            request_id=request_id,
            audit_entries_erased=summary["auditEntriesErased"],
        )
    )
    if request is not None:
        request.status = "completed"
        request.completed_at = now
        request.handled_by = ctx.actor_id
        request.updated_by = ctx.actor_id
    await ctx.db.flush()
    # Nothing personal in the entry: the id was pseudonymous and stays; the tombstone is new.
    await ctx.record(
        f"{ctx.origin.channel}:user:erase",
        category="user_activity",
        resource_type="user",
        resource_id=user_id,
        changes={**summary, **({"requestId": str(request_id)} if request_id else {})},
    )
    services = ctx.services

    async def destroy_kek() -> None:
        await shredding.resume_shreds(services.db, services.keyring)

    on_commit(ctx.db, destroy_kek)
    return summary
