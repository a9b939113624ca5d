"""What one request's rate-limit checks found, and how it is told to the client.

Headers: ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds until
the window has room again; IETF httpapi draft) and the seed's ``X-RateLimit-*`` with the reset
as epoch seconds, all from the tightest limit the request went through.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kanvaro.security.ratelimit.limiter import Decision
from kanvaro.security.ratelimit.networks import Address, client_key

STATE_KEY = "kanvaro.rate"


@dataclass(slots=True)
class RateState:
    """One request's rate-limit facts: who the network says it is, and the tightest limit
    seen (its figures go into the response headers)."""

    address: Address | None
    key: str | None
    exempt: bool = False
    tightest: Decision | None = None

    def note(self, decision: Decision) -> None:
        if self.tightest is None or decision.remaining < self.tightest.remaining:
            self.tightest = decision


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int  # 403 denied, 429 limited or blocked, 503 store unavailable (fail closed)
    kind: str  # problem type suffix
    detail: str
    retry_after: int | None = None
    decision: Decision | None = None


def new_state(address: Address | None) -> RateState:
    return RateState(address, client_key(address) if address is not None else None)


def headers_for(decision: Decision | None, now: float) -> list[tuple[bytes, bytes]]:
    if decision is None:
        return []
    reset = max(0, math.ceil(decision.reset_at - now))
    limit = str(decision.limit.item.amount).encode()
    remaining = str(max(0, decision.remaining)).encode()
    return [
        (b"ratelimit-limit", limit),
        (b"ratelimit-remaining", remaining),
        (b"ratelimit-reset", str(reset).encode()),
        (b"x-ratelimit-limit", limit),
        (b"x-ratelimit-remaining", remaining),
        (b"x-ratelimit-reset", str(math.ceil(decision.reset_at)).encode()),
    ]
