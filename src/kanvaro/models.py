"""Imports every model so that ``Base.metadata`` knows all tables (Alembic, tests)."""

from kanvaro.audit.models import AuditChainHead, AuditLog
from kanvaro.crypto.models import EncryptionKey, KeyRotation
from kanvaro.db import Base
from kanvaro.identity.mfa.models import (
    MfaBackupCode,
    MfaChallenge,
    MfaConfiguration,
    MfaMethod,
    MfaPolicyRow,
)
from kanvaro.identity.models import Invitation, RefreshToken, SigningKey, User, UserSession
from kanvaro.identity.sessions.models import SessionPolicyRow, TrustedDevice
from kanvaro.notify.models import MailSettings
from kanvaro.tenancy.models import Role, Tenant
from kanvaro.work.models import (
    BudgetEntry,
    Comment,
    Invoice,
    InvoiceLine,
    Project,
    ProjectMember,
    Task,
    TaskAssignee,
    TimeEntry,
)

__all__ = [
    "AuditChainHead",
    "AuditLog",
    "Base",
    "BudgetEntry",
    "Comment",
    "EncryptionKey",
    "Invitation",
    "Invoice",
    "InvoiceLine",
    "KeyRotation",
    "MailSettings",
    "MfaBackupCode",
    "MfaChallenge",
    "MfaConfiguration",
    "MfaMethod",
    "MfaPolicyRow",
    "Project",
    "ProjectMember",
    "RefreshToken",
    "Role",
    "SessionPolicyRow",
    "SigningKey",
    "Task",
    "TaskAssignee",
    "Tenant",
    "TimeEntry",
    "TrustedDevice",
    "User",
    "UserSession",
]
