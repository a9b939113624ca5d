"""A read-only CLI command run in the wrong directory must not create a new instance (a fresh
database and freshly generated secrets) and then report on that empty instance as if all were
well: `kanvaro audit verify` would answer "intact" for an audit log it never saw. Old code: it
migrated and generated secrets in ./.kanvaro and exited 0."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from kanvaro.cli import app

runner = CliRunner()


@pytest.mark.parametrize("command", [["audit", "verify"], ["keys", "status"]])
def test_read_only_commands_fail_closed_outside_an_instance(tmp_path, command):
    env = {k: None for k in os.environ if k.startswith("KANVARO_")}
    env["KANVARO_DATA_DIR"] = str(tmp_path / "elsewhere")
    result = runner.invoke(app, command, env=env)  # type: ignore[arg-type]
    assert result.exit_code != 0
    assert str((tmp_path / "elsewhere").resolve()) in result.output
    assert not (tmp_path / "elsewhere").exists()
    assert "intact" not in result.output
