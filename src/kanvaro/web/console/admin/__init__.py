"""Console pages: admin. Each module here has a ``router``; ``routers`` lists them.

* ``index.py``     ``/t/{slug}/admin``: the sections the person's permissions open
* ``users.py``     people, invitations, role changes, deactivation, MFA reset
* ``roles.py``     built-in roles (read-only) and the custom-role editor
* ``policies.py``  the MFA, session and password policies
* ``sso.py``       identity providers, enable/disable, "test connection"
* ``scim.py``      SCIM tokens (shown once when made or rotated), revoking them
* ``ratelimits.py`` rate-limit rules, IP allow/deny lists, blocks, violations
* ``keys.py``      the organization's data keys and rotation progress
* ``audit.py``     the audit log: filters, an entry, the chain's verification, checkpoints
* ``compliance.py`` reports, retention policies, data subject requests
"""

from __future__ import annotations

from fastapi import APIRouter

from kanvaro.web.console.admin import (
    audit,
    compliance,
    index,
    keys,
    policies,
    ratelimits,
    roles,
    scim,
    sso,
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
    ratelimits.router,
    sso.router,
    scim.router,
]
