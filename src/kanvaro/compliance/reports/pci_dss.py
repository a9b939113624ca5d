"""PCI DSS v4 controls this system can measure: requirement 3 (protect stored data), 7
(restrict access by need to know), 8 (identify users, MFA, session idle timeout) and 10 (log
and monitor, protect the logs)."""

from __future__ import annotations

from typing import Any

from kanvaro.acting import Acting
from kanvaro.compliance.reports.controls import safeguards
from kanvaro.compliance.reports.figures import Period

SECTIONS = {
    "accessControl": "Req. 7 restrict access; 8.3 authentication policy",
    "mfaCoverage": "Req. 8.4 multi-factor authentication",
    "encryption": "Req. 3.5 stored data rendered unreadable",
    "sessionPolicy": "Req. 8.2.8 idle session timeout (15 minutes or less)",
    "auditIntegrity": "Req. 10.3 audit logs protected from modification",
}


async def build(ctx: Acting, period: Period) -> dict[str, Any]:
    data = await safeguards(ctx, period)
    policy = data["sessionPolicy"]["policy"]
    data["sessionPolicy"]["idleTimeoutWithin15Minutes"] = policy["idle_timeout_minutes"] <= 15
    return {"references": SECTIONS, **data}
