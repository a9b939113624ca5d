"""Rate limiting's framework-free core: client networks, the counters (``limits``) behind
short local leases, and what a decision reports. The policy (which limits apply to whom) lives
in ``kanvaro.ratelimit``; the HTTP side in ``kanvaro.middleware.rate_limit`` and ``deps``."""
