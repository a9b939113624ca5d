"""What is measured: the loads (one server, one request pattern), how they are compared, and
the targets of issue 9. Data only; the runner in ``__main__`` walks it."""

from __future__ import annotations

from dataclasses import dataclass

from bench.loadtest.report import Target

KANVARO, BARE, DRF = "kanvaro", "bare", "drf"


@dataclass(frozen=True)
class Load:
    """One wrk workload against one server."""

    key: str
    label: str
    server: str
    script: str  # a file in bench/lua
    path: str  # "{id}" is replaced by a seeded task id; "{project}"/"{writes}" by project ids
    connections: int = 32
    body: str | None = None  # a JSON template for POST (same placeholders as path)


@dataclass(frozen=True)
class Comparison:
    """A subject against a baseline measured in the same rounds (or alone, for a target in
    absolute terms)."""

    label: str
    subject: str  # a Load key
    baseline: str | None
    target: Target | None


@dataclass(frozen=True)
class Group:
    """Loads run alternately in each round; ``--only`` selects groups by name."""

    name: str
    loads: tuple[Load, ...]
    comparisons: tuple[Comparison, ...]


LIST_QUERY = "?projectId={project}&status=todo&limit=50"
# Placeholders are replaced by runner.fill (plain replace, not str.format).
KANVARO_WRITE = '{"projectId":"{writes}","title":"Bench write"}'
BARE_WRITE = '{"tenantId":"{tenant}","projectId":"{writes}","title":"Bench write"}'


def _writes(connections: int) -> tuple[Load, Load]:
    return (
        Load(
            f"bare-insert-c{connections}",
            f"bare ORM insert, {connections} conn",
            BARE,
            "post_json.lua",
            "/tasks",
            connections,
            BARE_WRITE,
        ),
        Load(
            f"kanvaro-write-c{connections}",
            f"Kanvaro write + audit, {connections} conn",
            KANVARO,
            "post_json.lua",
            "/api/v1/tasks",
            connections,
            KANVARO_WRITE,
        ),
    )


GROUPS: tuple[Group, ...] = (
    Group(
        "read",
        (
            Load(
                "bare-read",
                "bare ORM read (row + assignees)",
                BARE,
                "get_random.lua",
                "/tasks/{id}",
            ),
            Load(
                "kanvaro-read",
                "Kanvaro secured read",
                KANVARO,
                "get_random.lua",
                "/api/v1/tasks/{id}",
            ),
            Load("bare-row", "bare ORM read (row only)", BARE, "get_random.lua", "/tasks/{id}/row"),
            Load("drf-read", "DRF + SimpleJWT read", DRF, "get_random.lua", "/tasks/{id}"),
        ),
        (
            Comparison(
                "secured read / bare ORM read", "kanvaro-read", "bare-read", Target.ratio(1.2)
            ),
            Comparison("secured read / bare ORM row only", "kanvaro-read", "bare-row", None),
            Comparison("secured read / DRF + SimpleJWT", "kanvaro-read", "drf-read", None),
        ),
    ),
    Group(
        "list",
        (
            Load("bare-list", "bare ORM list of 50", BARE, "get_fixed.lua", "/tasks" + LIST_QUERY),
            Load(
                "kanvaro-list",
                "Kanvaro secured list of 50",
                KANVARO,
                "get_fixed.lua",
                "/api/v1/tasks" + LIST_QUERY,
            ),
        ),
        (
            Comparison(
                "secured list / bare ORM list", "kanvaro-list", "bare-list", Target.ratio(1.0)
            ),
        ),
    ),
    Group(
        "write",
        (*_writes(32), *_writes(1)),
        (
            Comparison(
                "secured write / bare insert, 32 conn",
                "kanvaro-write-c32",
                "bare-insert-c32",
                Target.ratio(0.7),
            ),
            Comparison("secured write p99, 32 conn", "kanvaro-write-c32", None, Target.p99(100)),
            Comparison(
                "secured write / bare insert, 1 conn",
                "kanvaro-write-c1",
                "bare-insert-c1",
                Target.ratio(0.7),
            ),
        ),
    ),
    Group(
        "refresh",
        (
            Load(
                "kanvaro-refresh",
                "Kanvaro token refresh (rotation)",
                KANVARO,
                "refresh_chain.lua",
                "/api/v1/auth/refresh",
            ),
        ),
        (Comparison("token refresh", "kanvaro-refresh", None, Target.rps(600)),),
    ),
)

# Measured outside wrk (see signin.py, subbench.py); selectable with --only all the same.
OTHER = ("signin", "audit", "crypto", "ratelimit")
NAMES = tuple(g.name for g in GROUPS) + OTHER
# More refresh chains than connections: a chain whose refresh fails is gone for the run.
SPARE_CHAINS = 8


def round_order(group: Group, round_index: int) -> list[Load]:
    """Alternate the order every round (A B, then B A), so a drift in the machine's load
    does not always fall on the same side of a comparison."""
    loads = list(group.loads)
    return loads if round_index % 2 == 0 else loads[::-1]
