"""Exit releases everything: a script that never calls close(), SIGTERM and SIGINT leave no sandbox, browser or display.

Each test starts a real one-shot script (``Agent(..., tools=[...]).run(...)``,
no ``close()``) in a subprocess, lets its tools start (a Docker container, a
bubblewrap kernel, Chromium, an Xvfb display), then lets it exit, or signals
it. Afterwards no container carries its owner label, every process it started
(found by PID, through /proc) is gone, and nothing was printed about a close
that failed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from harmony_agent.sandboxes.docker import OWNER_LABEL, SANDBOX_LABEL, docker_client
from helpers import ROOT
from helpers.available import require

SCRIPT = r"""
import os, sys, time
from openai_harmony import Role
from harmony_agent import Agent
from harmony_agent.models import PolicyModel

tools = []
for name in sys.argv[2].split(","):
    if name.startswith("python-"):
        from harmony_agent.tools.python import PythonTool
        tools.append(PythonTool(name.split("-", 1)[1]))
    elif name == "browser":
        from harmony_agent.tools.browser import BrowserTool
        tools.append(BrowserTool())
    elif name == "computer":
        from harmony_agent.tools.computer import ComputerTool
        tools.append(ComputerTool())

def policy(messages):
    if messages[-1].author.role == Role.TOOL:
        return "<|channel|>final<|message|>done<|return|>"
    return "<|channel|>analysis to=python code<|message|>open('made.txt', 'w').write('x')<|call|>"

agent = Agent(PolicyModel(policy), tools=tools, output_dir=sys.argv[3])
agent.run("go")
print("ready", flush=True)
if sys.argv[1] == "wait":
    time.sleep(300)
"""


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, grandchildren...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    found, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    left = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            left.add(pid)
    return left


def containers_of(pid: int) -> list[str]:
    listed = docker_client().containers.list(all=True, filters={"label": SANDBOX_LABEL}, ignore_removed=True)
    return [c.id for c in listed if f":{pid}:" in c.labels.get(OWNER_LABEL, "")]


def start(tools: str, how: str, tmp_path: Path) -> subprocess.Popen:
    script = tmp_path / "one_shot.py"
    script.write_text(SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(script), how, tools, str(tmp_path / "out")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a signal for the script only, as a scheduler would send it
    )


def data_folders_of(pid: int) -> list[Path]:
    """The bubblewrap data folders (host side of /mnt/data) the process made."""
    return list(Path(tempfile.gettempdir()).glob(f"harmony-sandbox-{pid}_*"))


def wait_released(process: subprocess.Popen, started: set[int], docker: bool) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not alive(started) and not (docker and containers_of(process.pid)) and not data_folders_of(process.pid):
            return
        time.sleep(0.5)
    left = {pid: Path(f"/proc/{pid}/cmdline").read_bytes()[:80] for pid in alive(started)}
    containers = containers_of(process.pid) if docker else []
    pytest.fail(f"left behind: processes {left}, containers {containers}, folders {data_folders_of(process.pid)}")


def run_to_ready(process: subprocess.Popen) -> set[int]:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.strip() == "ready", (line, process.stderr.read() if process.poll() is not None else "")
    return descendants(process.pid)


CASES = {
    "docker": ("python-docker", "docker"),
    "bubblewrap": ("python-bubblewrap", "bubblewrap"),
    "browser": ("python-bubblewrap,browser", "chromium"),
    "computer": ("python-bubblewrap,computer", "desktop"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_script_that_never_closes_releases_everything_at_exit(case, tmp_path):
    tools, needs = CASES[case]
    require(needs)
    process = start(tools, "exit", tmp_path)
    started = run_to_ready(process)
    assert started, "the tools started no process"
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-2000:]
    assert "failed" not in err and "cannot schedule" not in err, err[-2000:]
    wait_released(process, started, docker=case == "docker")
    assert (tmp_path / "out" / "made.txt").read_text() == "x"


@pytest.mark.parametrize(
    "signal_number", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["SIGTERM", "SIGINT", "SIGKILL"]
)
@pytest.mark.parametrize("case", CASES)
def test_a_signal_releases_everything(case, signal_number, tmp_path):
    tools, needs = CASES[case]
    require(needs)
    process = start(tools, "wait", tmp_path)
    started = run_to_ready(process)
    if case == "docker":
        assert containers_of(process.pid), "the script's container is not running"
    os.kill(process.pid, signal_number)
    process.communicate(timeout=120)
    wait_released(process, started, docker=case == "docker")


def test_sigterm_to_a_batch_leaves_no_container(tmp_path):
    require("docker")
    (tmp_path / "slow_script.yaml").write_text(
        "completions:\n  - \"<|channel|>analysis to=python code<|message|>print('started', flush=True)\\n"
        'import time\\ntime.sleep(120)<|call|>"\n  - "<|channel|>final<|message|>done<|return|>"\n'
    )
    (tmp_path / "tasks.yaml").write_text(
        "tools: [python]\nsandbox: docker\ntasks:\n"
        "  - id: slow\n    model: scripted:slow_script.yaml\n    task: wait\n    checks:\n      - answer_contains: done\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "harmony_agent.cli", "batch", str(tmp_path / "tasks.yaml"), "--output", "batch"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not containers_of(process.pid):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()[-2000:]
        time.sleep(0.5)
    time.sleep(3)  # the cell is running in the container
    started = descendants(process.pid)
    os.kill(process.pid, signal.SIGTERM)
    process.communicate(timeout=120)
    wait_released(process, started, docker=True)
