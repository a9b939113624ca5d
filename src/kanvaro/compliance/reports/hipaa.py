"""HIPAA Security Rule technical safeguards (45 CFR 164.312): access control (a), audit
controls (b), integrity (c), person authentication (d), transmission and storage encryption
(a)(2)(iv)/(e)."""

from __future__ import annotations

from typing import Any

from kanvaro.acting import Acting
from kanvaro.compliance.reports.controls import safeguards
from kanvaro.compliance.reports.figures import Period

SECTIONS = {
    "accessControl": "164.312(a) access control",
    "mfaCoverage": "164.312(d) person or entity authentication",
    "encryption": "164.312(a)(2)(iv) encryption and decryption",
    "sessionPolicy": "164.312(a)(2)(iii) automatic logoff",
    "auditIntegrity": "164.312(b) audit controls, 164.312(c) integrity",
}


async def build(ctx: Acting, period: Period) -> dict[str, Any]:
    return {"references": SECTIONS, **await safeguards(ctx, period)}
