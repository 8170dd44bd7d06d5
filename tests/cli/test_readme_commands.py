"""Every `harmony-agent` command of the README's first five minutes, word for word, from a folder of its own.

A new user runs them from wherever they are, with the environment active. A command that names a
model this machine does not have must say in one line what to do, never print a traceback. (The
demo, run from an empty folder of a clean install, is tests/packaging/test_packaging.py's.)
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT

README = ROOT / "README.md"


def readme_commands() -> list[str]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.DOTALL):
        for line in block.splitlines():
            command = line.split("  #", 1)[0].strip()
            if command.startswith("harmony-agent "):
                commands.append(command)
    return commands


def run(command: str, folder: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """The command as a user types it: the venv's bin first on PATH, a folder that is not the checkout."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        shlex.split(command),
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_the_readme_names_the_commands_this_test_runs():
    commands = readme_commands()
    assert "harmony-agent demo" in commands and "harmony-agent doctor" in commands
    assert sum(command.startswith("harmony-agent run ") for command in commands) >= 3


@pytest.mark.slow  # doctor probes every real component
def test_doctor_runs_from_any_folder(tmp_path: Path):
    done = run("harmony-agent doctor", tmp_path, timeout=300)
    assert done.returncode in (0, 1), done.stderr
    assert "vocabulary" in done.stdout and "Traceback" not in done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in readme_commands() if c.startswith("harmony-agent run ")])
def test_a_model_that_is_not_here_is_one_clear_line(command: str, tmp_path: Path):
    """No GGUF in the cache, no vLLM, no Ollama: the run ends with what to do, not a traceback."""
    done = run(command + " --yes", tmp_path, timeout=300)
    assert done.returncode in (1, 2)
    out = done.stdout + done.stderr
    assert "Traceback" not in out
    assert any(hint in out for hint in ("hf download", "Is the server running?", "Is Ollama running?")), out[-2000:]
