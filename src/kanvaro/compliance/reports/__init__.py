"""Compliance reports: one module per report type, each ``build(ctx, period) -> figures``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from kanvaro.acting import Acting
from kanvaro.compliance.reports import gdpr, hipaa, pci_dss, soc2, sox
from kanvaro.compliance.reports.figures import Period

Builder = Callable[[Acting, Period], Awaitable[dict[str, Any]]]

BUILDERS: dict[str, Builder] = {
    "sox": sox.build,
    "gdpr": gdpr.build,
    "hipaa": hipaa.build,
    "pci_dss": pci_dss.build,
    "soc2": soc2.build,
}
TITLES = {
    "sox": "SOX internal controls report",
    "gdpr": "GDPR accountability report",
    "hipaa": "HIPAA Security Rule technical safeguards",
    "pci_dss": "PCI DSS access, authentication, encryption and logging",
    "soc2": "SOC 2 trust services criteria",
}
