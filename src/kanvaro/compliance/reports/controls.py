"""The technical safeguards HIPAA (45 CFR 164.312) and PCI DSS (v4, requirements 3, 7, 8, 10)
both ask about, measured once: access control, MFA coverage by role, encryption coverage of
the declared fields, the session policy, and audit integrity (from the evidence)."""

from __future__ import annotations

from typing import Any

from kanvaro.acting import Acting
from kanvaro.compliance.reports import figures
from kanvaro.compliance.reports.figures import Period


async def safeguards(ctx: Acting, period: Period) -> dict[str, Any]:
    access = await figures.access_control(ctx)
    sign_ins = await figures.entries(ctx, period, figures.AuditLog.category == "authentication")
    return {
        "accessControl": {
            **{k: v for k, v in access.items() if k not in ("mfa", "mfaByRole")},
            "passwordPolicy": await figures.password_policy(ctx),
            "authenticationEvents": figures.by_action(sign_ins),
        },
        "mfaCoverage": {
            **access["mfa"],
            "byRole": access["mfaByRole"],
            "policy": await figures.mfa_policy(ctx),
        },
        "encryption": await figures.encryption(ctx),
        "sessionPolicy": await figures.sessions(ctx, period),
    }
