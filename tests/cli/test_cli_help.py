"""``--help`` reads as plain text for people: no Typer type labels (``<bool>``, ``<str>``) and no reST markup."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from harmony_agent.cli.app import app

COMMANDS = [
    [],
    ["run"],
    ["chat"],
    ["batch"],
    ["report"],
    ["demo"],
    ["replay"],
    ["serve"],
    ["doctor"],
    ["mcp"],
    ["mcp", "serve"],
    ["sandbox"],
    ["sandbox", "build"],
    ["sandbox", "clean"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "harmony-agent")
def test_help_has_no_type_labels_or_markup(command):
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "160"}, terminal_width=160)
    assert result.exit_code == 0, result.output
    assert not re.search(r"<(bool|str|int|float|Path|list\[[^\]]*\])>", result.output), result.output
    assert "``" not in result.output and ":mod:" not in result.output


def test_options_name_their_values_and_flags_stand_alone():
    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "160"}, terminal_width=160)
    assert re.search(r"--model\s+-m\s+MODEL", result.output)
    assert re.search(r"--yes\s+-y\s+Approve every tool call", result.output)
