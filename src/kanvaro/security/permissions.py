"""Permissions (``<resource>:<action>``) and the built-in roles.

The seed's permissions and role sets (seed 000 ``ROLE_PERMISSIONS``) are kept exactly. Where
the seed names no permission for a resource we extend the vocabulary in the same form:
``comment:*``, ``time:*``, ``role:*``, ``audit:read`` and ``compliance:*``. Extensions are granted to built-in
roles as documented in ``docs/api.md``; the seed sets are never reduced.
"""

from __future__ import annotations

from enum import StrEnum

# fmt: off


class Permission(StrEnum):
    # seed 000
    PROJECT_CREATE = "project:create"
    PROJECT_READ = "project:read"
    PROJECT_UPDATE = "project:update"
    PROJECT_DELETE = "project:delete"
    PROJECT_ADMIN = "project:admin"
    TASK_CREATE = "task:create"
    TASK_READ = "task:read"
    TASK_UPDATE = "task:update"
    TASK_DELETE = "task:delete"
    TASK_ASSIGN = "task:assign"
    TEAM_READ = "team:read"
    TEAM_INVITE = "team:invite"
    TEAM_REMOVE = "team:remove"
    TEAM_ADMIN = "team:admin"
    BUDGET_READ = "budget:read"
    BUDGET_UPDATE = "budget:update"
    INVOICE_CREATE = "invoice:create"
    INVOICE_READ = "invoice:read"
    SYSTEM_ADMIN = "system:admin"
    USER_MANAGE = "user:manage"
    SETTINGS_UPDATE = "settings:update"
    # extensions: resources the seed names no permission for
    COMMENT_CREATE = "comment:create"
    COMMENT_READ = "comment:read"
    COMMENT_DELETE = "comment:delete"  # moderate: delete anyone's comment
    TIME_CREATE = "time:create"  # log, edit and delete one's own entries
    TIME_READ = "time:read"
    TIME_MANAGE = "time:manage"  # edit and delete anyone's entries
    ROLE_READ = "role:read"
    ROLE_MANAGE = "role:manage"
    AUDIT_READ = "audit:read"
    COMPLIANCE_READ = "compliance:read"  # reports, requests, registers, retention
    COMPLIANCE_MANAGE = "compliance:manage"  # generate reports, erase, holds, policies


P = Permission


class BuiltinRole(StrEnum):
    SUPER_ADMIN = "super_admin"
    ADMIN = "admin"
    PROJECT_MANAGER = "project_manager"
    TEAM_MEMBER = "team_member"
    CLIENT = "client"
    VIEWER = "viewer"


EXTENSION_PERMISSIONS = frozenset({
    P.COMMENT_CREATE, P.COMMENT_READ, P.COMMENT_DELETE,
    P.TIME_CREATE, P.TIME_READ, P.TIME_MANAGE, P.ROLE_READ, P.ROLE_MANAGE, P.AUDIT_READ,
    P.COMPLIANCE_READ, P.COMPLIANCE_MANAGE,
})
SEED_PERMISSIONS = frozenset(Permission) - EXTENSION_PERMISSIONS

SEED_ROLE_PERMISSIONS: dict[BuiltinRole, frozenset[Permission]] = {
    BuiltinRole.SUPER_ADMIN: SEED_PERMISSIONS,
    BuiltinRole.ADMIN: frozenset({
        P.PROJECT_CREATE, P.PROJECT_READ, P.PROJECT_UPDATE, P.PROJECT_DELETE,
        P.TASK_CREATE, P.TASK_READ, P.TASK_UPDATE, P.TASK_DELETE,
        P.TEAM_READ, P.TEAM_INVITE, P.TEAM_REMOVE,
        P.BUDGET_READ, P.BUDGET_UPDATE, P.INVOICE_CREATE, P.INVOICE_READ,
        P.USER_MANAGE, P.SETTINGS_UPDATE,
    }),
    BuiltinRole.PROJECT_MANAGER: frozenset({
        P.PROJECT_CREATE, P.PROJECT_READ, P.PROJECT_UPDATE,
        P.TASK_CREATE, P.TASK_READ, P.TASK_UPDATE, P.TASK_ASSIGN,
        P.TEAM_READ, P.TEAM_INVITE,
        P.BUDGET_READ, P.BUDGET_UPDATE, P.INVOICE_CREATE, P.INVOICE_READ,
    }),
    BuiltinRole.TEAM_MEMBER: frozenset({
        P.PROJECT_READ, P.TASK_CREATE, P.TASK_READ, P.TASK_UPDATE, P.TEAM_READ,
    }),
    BuiltinRole.CLIENT: frozenset({P.PROJECT_READ, P.TASK_READ}),
    BuiltinRole.VIEWER: frozenset({P.PROJECT_READ, P.TASK_READ, P.TEAM_READ}),
}

EXTENSIONS: dict[BuiltinRole, frozenset[Permission]] = {
    BuiltinRole.SUPER_ADMIN: frozenset(Permission),
    BuiltinRole.ADMIN: frozenset({
        P.COMMENT_CREATE, P.COMMENT_READ, P.COMMENT_DELETE,
        P.TIME_CREATE, P.TIME_READ, P.TIME_MANAGE,
        P.ROLE_READ, P.ROLE_MANAGE, P.AUDIT_READ, P.COMPLIANCE_READ, P.COMPLIANCE_MANAGE,
    }),
    BuiltinRole.PROJECT_MANAGER: frozenset({
        P.COMMENT_CREATE, P.COMMENT_READ, P.COMMENT_DELETE,
        P.TIME_CREATE, P.TIME_READ, P.TIME_MANAGE, P.ROLE_READ,
    }),
    BuiltinRole.TEAM_MEMBER: frozenset({P.COMMENT_CREATE, P.COMMENT_READ, P.TIME_CREATE, P.TIME_READ}),
    BuiltinRole.CLIENT: frozenset({P.COMMENT_CREATE, P.COMMENT_READ}),
    BuiltinRole.VIEWER: frozenset({P.COMMENT_READ}),
}


# fmt: on

ROLE_PERMISSIONS: dict[BuiltinRole, frozenset[Permission]] = {
    role: SEED_ROLE_PERMISSIONS[role] | EXTENSIONS[role] for role in BuiltinRole
}

# Roles whose holders see only the projects they are members of.
PROJECT_SCOPED_ROLES = frozenset({BuiltinRole.TEAM_MEMBER, BuiltinRole.CLIENT, BuiltinRole.VIEWER})

TENANT_ROLES = tuple(r for r in BuiltinRole if r is not BuiltinRole.SUPER_ADMIN)

ALL_PERMISSIONS = frozenset(p.value for p in Permission)


def parse_permissions(values: list[str]) -> frozenset[Permission]:
    """Validate a list of permission names; unknown names raise ``ValueError`` naming them."""
    unknown = sorted(set(values) - ALL_PERMISSIONS)
    if unknown:
        raise ValueError(f"unknown permissions: {', '.join(unknown)}")
    return frozenset(Permission(v) for v in values)


def builtin_permissions(role_name: str) -> frozenset[Permission] | None:
    try:
        return ROLE_PERMISSIONS[BuiltinRole(role_name)]
    except ValueError:
        return None
