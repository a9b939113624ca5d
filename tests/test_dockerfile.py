"""The Dockerfile follows the container principles (Docker cannot run here, so it is read):
multi-stage, slim final image with only the virtualenv, a fixed non-root uid, no build tools,
a curl-free HEALTHCHECK on /healthz, production mode, state in a volume."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_TOOLS = re.compile(
    r"\b(build-essential|gcc|g\+\+|clang|make|cmake|cc|libc6-dev|[a-z0-9.+-]+-dev|curl|wget|git)\b"
)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Instructions with continuations joined and comments dropped, grouped by stage."""
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        elif keyword == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        else:
            stages[-1].instructions.append((keyword, rest.strip()))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse((ROOT / "Dockerfile").read_text())[1]


def _exec_form(args: str) -> list[str]:
    assert args.startswith("["), f"use the exec form (JSON array): {args}"
    return json.loads(args)


def test_it_is_a_multi_stage_build_from_python_3_11_slim(stages):
    assert len(stages) >= 2
    builder, final = stages[0], stages[-1]
    assert builder.name, "the builder stage is named"
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", final.base), final.base


def test_the_builder_has_the_build_tools_and_makes_the_venv(stages):
    builder = stages[0]
    runs = " ".join(builder.all("RUN"))
    assert "build-essential" in runs
    assert "python -m venv /opt/kanvaro" in runs
    assert re.search(r"pip install (-r requirements\.lock|\.)", runs)


def test_the_final_stage_copies_only_the_virtualenv(stages):
    builder, final = stages[0], stages[-1]
    copies = final.all("COPY")
    assert copies, "the final stage copies the virtualenv from the builder"
    for copy in copies:
        parts = shlex.split(copy)
        assert f"--from={builder.name}" in parts, f"only the builder's output is copied: {copy}"
        assert [p for p in parts if not p.startswith("--")] == ["/opt/kanvaro", "/opt/kanvaro"]
    assert not final.all("ADD")


def test_the_final_stage_installs_no_build_tools(stages):
    final = stages[-1]
    for run in final.all("RUN"):
        for install in re.findall(r"apt-get install ([^&;|]+)", run):
            packages = [p for p in install.split() if not p.startswith("-")]
            tools = [p for p in packages if BUILD_TOOLS.fullmatch(p)]
            assert tools == [], f"build tools in the final image: {tools}"
        assert "pip install" not in run, "nothing is built in the final stage"
    assert "rm -rf /var/lib/apt/lists" in " ".join(final.all("RUN"))


def test_it_runs_as_a_fixed_non_root_user(stages):
    final = stages[-1]
    users = final.all("USER")
    assert users, "the final stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) >= 1000, "a numeric, non-root uid"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    # The user is created with that fixed uid, and nothing after USER switches back.
    assert any(f"--uid {uid}" in run for run in final.all("RUN"))
    last_user = max(i for i, (kw, _) in enumerate(final.instructions) if kw == "USER")
    assert all(kw != "RUN" for kw, _ in final.instructions[last_user + 1 :])


def test_the_healthcheck_probes_healthz_with_python_not_curl(stages):
    final = stages[-1]
    (check,) = final.all("HEALTHCHECK")
    assert "curl" not in check and "wget" not in check
    command = _exec_form(check[check.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"]
    assert "/healthz" in command[2]
    compile(command[2], "<healthcheck>", "exec")


def test_it_serves_in_production_on_all_interfaces_with_state_in_a_volume(stages):
    final = stages[-1]
    entry = _exec_form(final.all("ENTRYPOINT")[-1])
    assert entry[-4:] == ["kanvaro", "serve", "--host", "0.0.0.0"]
    env = " ".join(final.all("ENV"))
    assert "KANVARO_ENV=production" in env
    data_dir = re.search(r"KANVARO_DATA_DIR=(\S+)", env).group(1)
    volumes = [v for vol in final.all("VOLUME") for v in _exec_form(vol)]
    assert data_dir in volumes
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert not any("KANVARO_MASTER_KEY=" in e for e in final.all("ENV")), "no secret baked in"


def test_the_build_context_leaves_out_secrets_and_local_state():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".kanvaro", "**/secrets", "tests"} <= ignored
    assert "src" not in ignored and "pyproject.toml" not in ignored


def test_the_healthcheck_command_really_probes_a_server(stages, tmp_path):
    """Run the image's probe against a real ``kanvaro serve``: 0 while it runs, not 0 after."""
    import subprocess
    import sys

    from tests.test_cli import Server

    (check,) = stages[-1].all("HEALTHCHECK")
    code = _exec_form(check[check.index("CMD") + 3 :].strip())[2]
    server = Server(tmp_path / "data", tmp_path / "serve.log")
    try:
        server.wait_ready()
        probe = code.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
        assert subprocess.run([sys.executable, "-c", probe], timeout=60).returncode == 0
    finally:
        server.stop()
    assert (
        subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=60).returncode
        != 0
    )
