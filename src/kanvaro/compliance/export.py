"""Everything the system holds about one person (GDPR arts. 15 and 20), as JSON or a zip.

The document is written section by section from streamed queries, so an export of a person
with years of time entries never sits in memory whole. Each section is a list of plain JSON
objects (camelCase keys, ISO times). Secrets never appear: the MFA sections are read column
by column (no TOTP secret, no credential key, no backup code), sessions without their token
hashes, the profile without the password hash.

The access rule and the audit entry are the caller's (``compliance.routes``); this module
only reads, in a session of its own, because a streamed body is sent after the request's
transaction has committed.
"""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kanvaro.audit.hashing import timestamp
from kanvaro.audit.models import AuditLog
from kanvaro.audit.service import chain_for, to_payload
from kanvaro.compliance.models import DataSubjectRequest, UserErasure
from kanvaro.db import Base, Database
from kanvaro.identity.mfa.models import MfaBackupCode, MfaMethod
from kanvaro.identity.models import User, UserSession
from kanvaro.identity.sessions.models import TrustedDevice
from kanvaro.tenancy.models import Role
from kanvaro.tenancy.role_service import role_permissions
from kanvaro.work.models import (
    BudgetEntry,
    Comment,
    Invoice,
    Project,
    ProjectMember,
    Task,
    TaskAssignee,
    TimeEntry,
)

FORMAT = "kanvaro-personal-data/1"
BATCH = 500


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _value(value: Any) -> Any:
    if isinstance(value, bytes):
        return None  # no binary column is personal data worth exporting (keys, credentials)
    return to_payload(value)


def _mapping(row: Any) -> dict[str, Any]:
    return {_camel(key): _value(value) for key, value in row._mapping.items()}


@dataclass(frozen=True)
class Section:
    Statement = Callable[[uuid.UUID, uuid.UUID | None], Select[Any]]

    name: str
    statement: Statement


def _cols(model: Any, *names: str) -> list[Any]:
    return [getattr(model, n) for n in names]


_PROJECT = ("id", "name", "description", "status", "start_date", "end_date", "created_at")
_TASK = ("id", "project_id", "title", "description", "status", "priority", "due_date",
         "created_at", "updated_at")  # fmt: skip
_SESSION = ("id", "created_at", "last_activity_at", "expires_at", "is_active", "revoked_at",
            "revoked_reason", "ip_address", "device_info", "location", "auth_methods",
            "risk_score", "risk_reasons")  # fmt: skip
_MFA = ("id", "method_type", "is_enabled", "is_primary", "device_name", "verified_at",
        "last_used_at", "created_at", "aaguid", "transports", "discoverable")  # fmt: skip
_AUDIT = ("sequence_number", "id", "action", "category", "created_at", "actor_id",
          "resource_type", "resource_id", "changes", "ip_address", "user_agent")  # fmt: skip


def _audit(user: uuid.UUID, tenant: uuid.UUID | None) -> Select[Any]:
    about = (AuditLog.resource_type == "user") & (AuditLog.resource_id == str(user))
    return (
        select(*_cols(AuditLog, *_AUDIT))
        .where(AuditLog.chain_id == chain_for(tenant), or_(AuditLog.actor_id == user, about))
        .order_by(AuditLog.sequence_number)
    )


_COMMENT = ("id", "task_id", "body", "created_at", "updated_at")
_TIME = ("id", "project_id", "task_id", "entry_date", "hours", "description", "billable",
         "created_at")  # fmt: skip
_BUDGET = ("id", "project_id", "kind", "category", "description", "amount_minor", "currency",
           "entry_date", "created_at")  # fmt: skip
# The person's part of an invoice only: the client's data is the client's.
_INVOICE = ("id", "number", "status", "currency", "issue_date", "total_minor", "created_at")
_DEVICE = ("id", "device_name", "device_fingerprint", "is_trusted", "trust_expires_at",
           "last_used_at", "last_ip", "created_at")  # fmt: skip
_REQUEST = ("id", "request_type", "status", "received_at", "due_at", "completed_at")


def _of(model: Any, fields: tuple[str, ...], owner: str, order: str) -> Section.Statement:
    """Rows of ``model`` whose ``owner`` column names the person, ``fields`` only."""

    def statement(user: uuid.UUID, tenant: uuid.UUID | None) -> Select[Any]:
        return (
            select(*_cols(model, *fields))
            .where(getattr(model, owner) == user)
            .order_by(getattr(model, order))
        )

    return statement


def _memberships(user: uuid.UUID, tenant: uuid.UUID | None) -> Select[Any]:
    return (
        select(
            ProjectMember.project_id,
            Project.name.label("project_name"),
            ProjectMember.project_role,
            ProjectMember.created_at,
        )
        .join(Project, Project.id == ProjectMember.project_id)
        .where(ProjectMember.user_id == user)
        .order_by(ProjectMember.created_at)
    )


def _assigned(user: uuid.UUID, tenant: uuid.UUID | None) -> Select[Any]:
    return (
        select(*_cols(Task, *_TASK))
        .join(TaskAssignee, TaskAssignee.task_id == Task.id)
        .where(TaskAssignee.user_id == user)
        .order_by(Task.created_at)
    )


SECTIONS: tuple[Section, ...] = (
    Section("memberships", _memberships),
    Section("projectsCreated", _of(Project, _PROJECT, "created_by", "created_at")),
    Section("tasksCreated", _of(Task, _TASK, "created_by", "created_at")),
    Section("tasksAssigned", _assigned),
    Section("comments", _of(Comment, _COMMENT, "author_id", "created_at")),
    Section("timeEntries", _of(TimeEntry, _TIME, "user_id", "entry_date")),
    Section("budgetEntriesCreated", _of(BudgetEntry, _BUDGET, "created_by", "created_at")),
    Section("invoicesCreated", _of(Invoice, _INVOICE, "created_by", "created_at")),
    Section("sessions", _of(UserSession, _SESSION, "user_id", "created_at")),
    Section("devices", _of(TrustedDevice, _DEVICE, "user_id", "created_at")),
    Section("mfaMethods", _of(MfaMethod, _MFA, "user_id", "created_at")),
    Section(
        "dataSubjectRequests",
        _of(DataSubjectRequest, _REQUEST, "subject_user_id", "received_at"),
    ),
    Section("auditEntries", _audit),
)


def _sso_section() -> Section | None:
    """SSO links, if this build has SSO (found by table name: compliance must not depend on
    the SSO package's internals). The IdP's subject and address, never a token."""
    table = Base.metadata.tables.get("sso_identities")
    if table is None:
        return None
    wanted = [c for c in ("id", "provider_id", "subject", "email", "created_at",
                          "last_login_at") if c in table.c]  # fmt: skip

    def statement(u: uuid.UUID, t: uuid.UUID | None) -> Select[Any]:
        stmt = select(*[table.c[c] for c in wanted]).where(table.c.user_id == u)
        if t is not None and "tenant_id" in table.c:  # a Core table: scope it ourselves
            stmt = stmt.where(table.c.tenant_id == t)
        return stmt

    return Section("ssoLinks", statement)


class NoSuchPerson(LookupError):
    pass


async def profile(session: AsyncSession, user_id: uuid.UUID) -> dict[str, Any]:
    user = await session.get(User, user_id)
    if user is None:
        raise NoSuchPerson(str(user_id))
    role = await session.get(Role, user.role_id) if user.role_id else None
    erased = (
        await session.execute(select(UserErasure.tombstone).where(UserErasure.user_id == user_id))
    ).scalar_one_or_none()
    codes_left = len(
        (
            await session.execute(
                select(MfaBackupCode.id).where(
                    MfaBackupCode.user_id == user_id, MfaBackupCode.used_at.is_(None)
                )
            )
        ).all()
    )
    return {
        "id": str(user.id),
        "tenantId": str(user.tenant_id) if user.tenant_id else None,
        "email": user.email,
        "firstName": user.first_name,
        "lastName": user.last_name,
        "phone": user.phone,
        "isActive": user.is_active,
        "createdAt": timestamp(user.created_at),
        "lastLoginAt": timestamp(user.last_login_at) if user.last_login_at else None,
        "passwordChangedAt": (
            timestamp(user.password_changed_at) if user.password_changed_at else None
        ),
        "deactivatedAt": timestamp(user.deactivated_at) if user.deactivated_at else None,
        "role": None
        if role is None
        else {"name": role.name, "permissions": sorted(role_permissions(role))},
        "backupCodesLeft": codes_left,
        "erasedAs": erased,
    }


async def _rows(session: AsyncSession, stmt: Select[Any]) -> AsyncIterator[dict[str, Any]]:
    result = await session.stream(stmt.execution_options(yield_per=BATCH))
    async for row in result:
        yield _mapping(row)


def _sections() -> list[Section]:
    extra = _sso_section()
    return [*SECTIONS, *([extra] if extra else [])]


async def json_chunks(
    db: Database, tenant_id: uuid.UUID | None, user_id: uuid.UUID, exported_at: str
) -> AsyncIterator[bytes]:
    """The export as one JSON object, in chunks (one row at a time)."""
    async with db.session(tenant_id=tenant_id, all_tenants=tenant_id is None) as session:
        head = {
            "format": FORMAT,
            "exportedAt": exported_at,
            "profile": await profile(session, user_id),
        }
        yield orjson.dumps(head)[:-1]  # the object stays open for the sections
        for section in _sections():
            yield b',"' + section.name.encode() + b'":['
            first = True
            async for item in _rows(session, section.statement(user_id, tenant_id)):
                yield (b"" if first else b",") + orjson.dumps(item)
                first = False
            yield b"]"
        yield b"}"


class _Sink(io.RawIOBase):
    """A write-only stream whose bytes are taken out as they come (zipfile writes a
    non-seekable stream with data descriptors)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.buffer += data
        return len(data)

    def take(self) -> bytes:
        out = bytes(self.buffer)
        self.buffer.clear()
        return out


async def zip_chunks(
    db: Database, tenant_id: uuid.UUID | None, user_id: uuid.UUID, exported_at: str
) -> AsyncIterator[bytes]:
    """The export as a zip: ``profile.json`` and one JSON-lines file per section, so each
    file opens in any tool, and a ``README.txt`` that says what is where."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        async with db.session(tenant_id=tenant_id, all_tenants=tenant_id is None) as session:
            head = {"format": FORMAT, "exportedAt": exported_at}
            head["profile"] = await profile(session, user_id)
            archive.writestr("profile.json", orjson.dumps(head, option=orjson.OPT_INDENT_2))
            names = []
            for section in _sections():
                name = f"{section.name}.jsonl"
                names.append(name)
                with archive.open(name, "w") as member:
                    async for item in _rows(session, section.statement(user_id, tenant_id)):
                        member.write(orjson.dumps(item) + b"\n")
                        if len(sink.buffer) >= 64 * 1024:
                            yield sink.take()
                yield sink.take()
            readme = (
                "Personal data held by Kanvaro about one person (GDPR arts. 15 and 20).\n"
                "profile.json: the account; each .jsonl file: one JSON object per line.\n"
                + "".join(f"  {n}\n" for n in names)
            )
            archive.writestr("README.txt", readme)
    yield sink.take()
