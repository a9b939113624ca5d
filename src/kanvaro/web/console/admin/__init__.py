"""Console pages: admin. Each module here has a ``router``; ``routers`` lists them.

* ``index.py``     ``/t/{slug}/admin``: the sections the person's permissions open
* ``users.py``     people, invitations, role changes, deactivation, MFA reset
* ``roles.py``     built-in roles (read-only) and the custom-role editor
* ``policies.py``  the MFA, session and password policies
* ``sso.py``       identity providers, enable/disable, "test connection"
* ``sso_policy.py`` the SSO policy, and the email domains verified by DNS
* ``scim.py``      SCIM tokens (shown once when made or rotated), revoking them; the
                   SCIM group -> role mapping
* ``ratelimits.py`` rate-limit rules, IP allow/deny lists, blocks, violations
* ``keys.py``      the organization's data keys and rotation progress
* ``audit.py``     the audit log: filters, an entry, the chain's verification, checkpoints
* ``compliance.py`` reports, retention policies, data subject requests
* ``compliance_records.py`` processing activities, legal holds, the breach register
"""

from __future__ import annotations

from fastapi import APIRouter

from kanvaro.web.console.admin import (
    audit,
    compliance,
    compliance_records,
    index,
    keys,
    policies,
    ratelimits,
    roles,
    scim,
    sso,
    sso_policy,
    users,
)

routers: list[APIRouter] = [
    index.router,
    users.router,
    roles.router,
    policies.router,
    audit.router,
    keys.router,
    compliance.router,
    compliance_records.router,
    ratelimits.router,
    sso.router,
    sso_policy.router,
    scim.router,
]
