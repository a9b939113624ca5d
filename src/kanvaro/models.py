"""Imports every model so that ``Base.metadata`` knows all tables (Alembic, tests)."""

from kanvaro.audit.models import AuditChainHead, AuditLog
from kanvaro.compliance.models import (
    ComplianceReport,
    DataBreach,
    DataSubjectRequest,
    LegalHold,
    ProcessingActivity,
    RetentionPolicy,
    UserErasure,
)
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
from kanvaro.identity.password_reset.models import PasswordResetToken
from kanvaro.identity.scim.models import (
    ScimGroup,
    ScimGroupMember,
    ScimRoleMapping,
    ScimToken,
    ScimUser,
)
from kanvaro.identity.sessions.models import SessionPolicyRow, TrustedDevice
from kanvaro.identity.sso.models import (
    SsoDomain,
    SsoIdentity,
    SsoPolicyRow,
    SsoProvider,
    SsoRequest,
    SsoSeenAssertion,
    SsoSession,
)
from kanvaro.notify.models import MailSettings
from kanvaro.ratelimit.models import IpAccessRule, RateLimitRule, RateLimitViolation
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
    "ComplianceReport",
    "DataBreach",
    "DataSubjectRequest",
    "EncryptionKey",
    "Invitation",
    "Invoice",
    "InvoiceLine",
    "IpAccessRule",
    "KeyRotation",
    "LegalHold",
    "MailSettings",
    "MfaBackupCode",
    "MfaChallenge",
    "MfaConfiguration",
    "MfaMethod",
    "MfaPolicyRow",
    "PasswordResetToken",
    "ProcessingActivity",
    "Project",
    "ProjectMember",
    "RateLimitRule",
    "RateLimitViolation",
    "RefreshToken",
    "RetentionPolicy",
    "Role",
    "ScimGroup",
    "ScimGroupMember",
    "ScimRoleMapping",
    "ScimToken",
    "ScimUser",
    "SessionPolicyRow",
    "SigningKey",
    "SsoDomain",
    "SsoIdentity",
    "SsoPolicyRow",
    "SsoProvider",
    "SsoRequest",
    "SsoSeenAssertion",
    "SsoSession",
    "Task",
    "TaskAssignee",
    "Tenant",
    "TimeEntry",
    "TrustedDevice",
    "User",
    "UserErasure",
    "UserSession",
]
