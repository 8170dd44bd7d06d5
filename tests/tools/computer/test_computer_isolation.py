"""The desktop keeps to itself, on real Xvfb: no process-wide side effects, one display connection per tool,
apps that cannot see the agent's secrets (or, sandboxed, its network and files), nothing left by a killed agent."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from harmony_agent.sandboxes.display import VirtualDisplay, reap_stale_displays
from harmony_agent.tools.computer import ComputerTool
from helpers import ROOT
from helpers.available import require
from helpers.computer_helpers import call, observe_until, pointer

GTK_GREETER = ROOT / "examples" / "desktop" / "gtk_greeter.py"
SECRET = "s3cret-9f1c-do-not-leak"


def greeting(state) -> str | None:
    """The app's saved greeting, or None while the file is missing or half-written."""
    try:
        return json.loads(state.read_text()).get("greeting")
    except (OSError, ValueError):
        return None


def wait_for(predicate, timeout: float = 10.0, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def test_importing_and_using_the_computer_tool_leaves_the_process_environment_unchanged():
    require("desktop")
    script = (
        "import asyncio, json, os\n"
        "before = dict(os.environ)\n"
        "import tools, tools.computer, tools.computer.screen, tools.computer.xclient, sandboxes.display\n"
        "after_import = dict(os.environ)\n"
        "from tools import ToolCall\n"
        "async def main():\n"
        "    tool = tools.ComputerTool(sandboxes.display.VirtualDisplay(640, 480))\n"
        "    await tool.start()\n"
        "    for name, args in [('observe', {}), ('click', {'x': 5, 'y': 5}), ('key', {'keys': 'ctrl+a'}),\n"
        "                       ('type_text', {'text': 'Zoë'}), ('scroll', {})]:\n"
        "        r = await tool.process(ToolCall('functions.' + name, 'commentary', json.dumps(args)))\n"
        "        assert not r.is_error, r.text()\n"
        "    during = dict(os.environ)\n"
        "    await tool.aclose()\n"
        "    return during\n"
        "during = asyncio.run(main())\n"
        "print(json.dumps({'import': after_import == before, 'during': during == before, 'after': dict(os.environ) == before,\n"
        "                  'changed': sorted(set(during.items()) ^ set(before.items()))}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_THREAD_LIMIT", "DISPLAY", "XAUTHORITY")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"import": True, "during": True, "after": True, "changed": []}


async def test_two_tools_in_one_process_each_act_on_their_own_display():
    require("desktop")
    first, second = ComputerTool(VirtualDisplay(640, 480)), ComputerTool(VirtualDisplay(800, 600))
    try:
        await first.start()
        await second.start()
        assert first.display.display != second.display.display
        assert not (await call(first, "move", x=100, y=110)).is_error
        assert not (await call(second, "move", x=300, y=310)).is_error
        assert not (await call(first, "click", x=120, y=130)).is_error
        assert pointer(first.display) == (120, 130)
        assert pointer(second.display) == (300, 310)  # the first tool's click did not land here
        # Closing one leaves the other working.
        await first.aclose()
        assert not (await call(second, "move", x=50, y=60)).is_error
        assert pointer(second.display) == (50, 60)
    finally:
        await first.aclose()
        await second.aclose()


async def test_booleans_are_refused_as_coordinates():
    tool = ComputerTool(VirtualDisplay(640, 480))  # refused before any display is needed
    for name, arguments in [
        ("click", {"x": True, "y": 5}),
        ("move", {"x": 5, "y": False}),
        ("drag", {"from_x": 1, "from_y": 1, "to_x": True, "to_y": 1}),
        ("scroll", {"x": True, "y": 1}),
        ("double_click", {"x": False, "y": 0}),
    ]:
        refused = await call(tool, name, **arguments)
        assert refused.is_error and "not true or false" in refused.text(), (name, refused.text())
    assert not tool.display.started


async def test_a_launched_app_cannot_see_the_agents_secrets(tmp_path, monkeypatch):
    require("desktop")
    monkeypatch.setenv("TAVILY_API_KEY", SECRET)
    monkeypatch.setenv("HARMONY_AGENT_API_KEY", SECRET)
    dump = tmp_path / "env.txt"
    tool = ComputerTool(
        VirtualDisplay(640, 480, env={"GREETING": "named by the user"}),
        apps={"dump": ["sh", "-c", f"env > {dump}.part && mv {dump}.part {dump}"]},
    )
    try:
        await tool.start()
        assert not (await call(tool, "launch", app="dump")).is_error
        assert wait_for(dump.exists)
        seen = dict(line.split("=", 1) for line in dump.read_text().splitlines() if "=" in line)
    finally:
        await tool.aclose()
    assert SECRET not in dump.read_text()
    assert seen["DISPLAY"] == tool.display.display and seen["GREETING"] == "named by the user"
    assert "harmony-display-" in seen["HOME"] and "harmony-display-" in seen["XAUTHORITY"]
    assert "DBUS_SESSION_BUS_ADDRESS" in seen and "PATH" in seen
    assert set(seen) <= {
        "DISPLAY",
        "XAUTHORITY",
        "HOME",
        "XDG_RUNTIME_DIR",
        "DBUS_SESSION_BUS_ADDRESS",
        "PATH",
        "LANG",
        "LANGUAGE",
        "LC_ALL",
        "LC_CTYPE",
        "LC_MESSAGES",
        "TZ",
        "QT_LINUX_ACCESSIBILITY_ALWAYS_ON",
        "GREETING",
        "PWD",
        "SHLVL",
        "_",
        "OLDPWD",
    }, seen


async def test_a_bubblewrap_sandboxed_app_has_no_network_no_host_files_and_no_secrets(tmp_path, monkeypatch):
    require("desktop")
    require("bubblewrap")
    monkeypatch.setenv("TAVILY_API_KEY", SECRET)
    private = tmp_path / "private.txt"
    private.write_text(SECRET)
    probe = (
        "env > env.txt; cat /proc/net/dev > net.txt; "
        f"(cat {private} 2>&1 || true) > private.txt; ls / > root.txt; touch done"
    )
    tool = ComputerTool(VirtualDisplay(640, 480, sandbox="bubblewrap"), apps={"probe": ["sh", "-c", probe]})
    try:
        await tool.start()
        home = Path(tool.display.env()["HOME"])
        assert not (await call(tool, "launch", app="probe")).is_error
        assert wait_for((home / "done").exists)
        env, net = (home / "env.txt").read_text(), (home / "net.txt").read_text()
        private_seen, root = (home / "private.txt").read_text(), (home / "root.txt").read_text().split()
    finally:
        await tool.aclose()
    assert SECRET not in env and SECRET not in private_seen and "No such file" in private_seen
    interfaces = [line.split(":")[0].strip() for line in net.splitlines()[2:]]
    assert interfaces == ["lo"]  # a network namespace of its own
    assert "root" not in root and "work" not in root  # no host home or project files


async def test_a_gtk_app_in_the_bubblewrap_sandbox_is_still_seen_and_driven(tmp_path):
    require("desktop")
    require("bubblewrap")
    tool = ComputerTool(
        VirtualDisplay(1024, 700, sandbox="bubblewrap", read_only=[GTK_GREETER.parent]),
        apps={"gtk": ["/usr/bin/python3", str(GTK_GREETER)]},
    )
    try:
        await tool.start()
        await call(tool, "launch", app="gtk")
        seen = await observe_until(tool, 'push button "Greet"')
        assert 'push button "Greet"' in seen  # its accessibility tree crossed the sandbox on the display's bus
        field = [line for line in seen.splitlines() if line.strip().startswith("- text")][0]
        x, y = (int(v) for v in field.split("at (")[1].rstrip(")").split(", "))
        await call(tool, "click", x=x, y=y)
        await call(tool, "type_text", text="Ñandú")
        await call(tool, "click", text="Greet")
        after = await observe_until(tool, "Hello")
        assert 'label "Hello, Ñandú!"' in after, after
    finally:
        await tool.aclose()


def test_in_the_bubblewrap_mode_the_x_server_runs_in_namespaces_of_its_own():
    require("desktop")
    require("bubblewrap")
    display = VirtualDisplay(320, 240, sandbox="bubblewrap", window_manager=False, accessibility=False).start()
    try:
        children = {int(p.name): p for p in Path("/proc").iterdir() if p.name.isdigit()}
        xvfb = [
            pid
            for pid, path in children.items()
            if (path / "cmdline").exists() and (path / "cmdline").read_bytes().startswith(b"Xvfb\0")
            and display.authority and display.authority.encode() in (path / "cmdline").read_bytes()
        ]  # fmt: skip
        assert len(xvfb) == 1
        for namespace in ("net", "mnt", "pid", "ipc"):
            assert os.readlink(f"/proc/{xvfb[0]}/ns/{namespace}") != os.readlink(f"/proc/self/ns/{namespace}")
        # Of the host's files it sees the system, not the project nor the agent's home.
        assert not Path(f"/proc/{xvfb[0]}/root{ROOT}").exists() and Path(f"/proc/{xvfb[0]}/root/usr/bin").is_dir()
        # Clients on the host still reach it by an ordinary display number, with the cookie only.
        probe = ["xdpyinfo", "-display", display.display]
        assert subprocess.run(probe, env=display.env(), capture_output=True).returncode == 0
        no_cookie = {k: v for k, v in display.env().items() if k != "XAUTHORITY"}
        assert subprocess.run(probe, env=no_cookie, capture_output=True).returncode != 0
        number = display.display.lstrip(":")
    finally:
        display.stop()
    assert not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists()


@pytest.mark.parametrize("sandbox", ["none", "bubblewrap"])
def test_a_killed_agents_display_folder_and_stale_socket_are_reaped_at_the_next_start(tmp_path, sandbox):
    require("desktop")
    if sandbox == "bubblewrap":
        require("bubblewrap")  # the server's socket is in the folder, reached through a link and a lock of ours
    script = tmp_path / "owner.py"
    script.write_text(
        "import json, sys, time\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from sandboxes.display import VirtualDisplay\n"
        f"d = VirtualDisplay(320, 240, accessibility=False, sandbox={sandbox!r}).start()\n"
        "print(json.dumps({'folder': str(d._folder), 'display': d.display, 'server': d.pids[0]}), flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        started = json.loads(owner.stdout.readline())
    finally:
        # The worst case: the agent and its X server killed at once (an OOM kill of the group), so that
        # nobody cleans up: the folder with its cookie, the socket and the lock stay behind.
        os.kill(started["server"], signal.SIGKILL)
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    number = started["display"].lstrip(":")
    socket, folder = Path(f"/tmp/.X11-unix/X{number}"), Path(started["folder"])
    assert wait_for(
        lambda: (
            not Path(f"/proc/{started['server']}").exists()
            or "Z" in Path(f"/proc/{started['server']}/stat").read_text().split(")")[1].split()[0]
        ),
        5,
    )
    lock = Path(f"/tmp/.X{number}-lock")
    assert folder.exists() and (folder / "Xauthority").exists() and socket.exists()
    assert lock.exists() or sandbox == "none"  # ours, with the agent's pid, for a sandboxed server
    assert str(folder) in reap_stale_displays()
    assert not folder.exists() and not os.path.lexists(socket) and not lock.exists()


def test_a_display_start_reaps_folders_of_dead_owners(tmp_path):
    require("desktop")
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = Path(tempfile.mkdtemp(prefix="harmony-display-"))
    (stale / "Xauthority").write_text("cookie")
    (stale / "owner").write_text(json.dumps({"owner": f"{socket.gethostname()}:{gone.pid}:1", "number": None}))
    display = VirtualDisplay(320, 240, window_manager=False, accessibility=False).start()
    try:
        assert not stale.exists()
        assert Path(display.env()["HOME"]).parent.exists()  # its own folder stays, of course
    finally:
        display.stop()


def test_reaping_spares_live_owners_and_folders_it_cannot_judge(tmp_path):
    from harmony_agent.sandboxes._owner import owner_tag

    live = tmp_path / "harmony-display-live"
    live.mkdir()
    (live / "owner").write_text(json.dumps({"owner": owner_tag(), "number": None}))
    unknown = tmp_path / "harmony-display-unknown"
    unknown.mkdir()
    (unknown / "owner").write_text("not json")
    dead = tmp_path / "harmony-display-dead"
    dead.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    (dead / "owner").write_text(json.dumps({"owner": owner_tag(gone.pid).rsplit(":", 1)[0] + ":1", "number": None}))
    assert reap_stale_displays(tmp_path) == [str(dead)]
    assert live.exists() and unknown.exists() and not dead.exists()


def test_an_unknown_sandbox_is_refused():
    with pytest.raises(Exception, match="unknown display sandbox"):
        VirtualDisplay(sandbox="chroot")  # type: ignore[arg-type]


def require_desktop_image() -> None:
    """The desktop image is built by scripts/setup.sh (python -m harmony_agent.sandboxes.images.desktop); CI requires it."""
    require("desktop")
    require("docker")
    from harmony_agent.sandboxes.docker import docker_client
    from harmony_agent.sandboxes.images.desktop import DESKTOP_IMAGE

    try:
        docker_client(timeout=5).images.get(DESKTOP_IMAGE)
    except Exception:
        required = {k.strip() for k in os.environ.get("HARMONY_AGENT_REQUIRE", "").split(",")}
        message = f"the image {DESKTOP_IMAGE} is missing: python -m harmony_agent.sandboxes.images.desktop"
        if "docker" in required and "desktop" in required:
            pytest.fail(message)
        pytest.skip(message)


async def test_the_whole_desktop_in_a_docker_container_is_driven_the_same_way(tmp_path, monkeypatch):
    require_desktop_image()
    monkeypatch.setenv("TAVILY_API_KEY", SECRET)
    # The real file: examples/desktop/greeter.py is a link into the package's demo kit, and a link to a
    # folder not mounted in the container leads nowhere there.
    greeter = (ROOT / "examples" / "desktop" / "greeter.py").resolve()
    display = VirtualDisplay(1024, 700, sandbox="docker", read_only=[greeter.parent])
    probe = f"env > env.txt; cat /proc/net/dev > net.txt; ls {ROOT} > root.txt; ls /root > home.txt 2>&1; touch done"
    tool = ComputerTool(
        display, apps={"greeter": ["python3", str(greeter), "state.json"], "probe": ["sh", "-c", probe]}
    )
    try:
        await tool.start()
        home = Path(display.env()["HOME"])
        container = display._docker.container  # type: ignore[union-attr]
        assert container is not None and container.attrs["HostConfig"]["NetworkMode"] == "none"
        # No xhost rule inside: a host process gets in with the display's cookie, and without it not at all.
        probe = ["xdpyinfo", "-display", display.display]
        assert subprocess.run(probe, env=display.env(), capture_output=True).returncode == 0
        no_cookie = {k: v for k, v in display.env().items() if k != "XAUTHORITY"}
        assert b"unable to open display" in subprocess.run(probe, env=no_cookie, capture_output=True).stderr
        await call(tool, "launch", app="probe")
        assert wait_for((home / "done").exists)
        assert SECRET not in (home / "env.txt").read_text()
        assert [line.split(":")[0].strip() for line in (home / "net.txt").read_text().splitlines()[2:]] == ["lo"]
        # of the project, only the folder named
        assert (home / "root.txt").read_text().split() == [greeter.relative_to(ROOT).parts[0]]
        assert "harmony" not in (home / "home.txt").read_text()  # nothing of the host's home
        # The Tk greeter in the container, driven through the same observe and actions.
        await call(tool, "launch", app="greeter")
        seen = await observe_until(tool, "Say hello")
        field = re.search(r'"type your name[^"]*" at \((\d+), (\d+)\)', seen)
        assert field, seen
        await call(tool, "click", x=int(field.group(1)), y=int(field.group(2)))
        await call(tool, "type_text", text="Zoë Ørsted")
        await call(tool, "click", text="Say hello")
        state = home / "state.json"
        assert wait_for(lambda: greeting(state) == "Hello, Zoë Ørsted!")
        number = display.display.lstrip(":")
    finally:
        await tool.aclose()
    assert not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists()
    from harmony_agent.sandboxes.docker import docker_client

    assert not docker_client().containers.list(all=True, filters={"id": container.id})


def test_a_desktop_container_left_by_a_killed_agent_is_removed_at_the_next_start():
    require_desktop_image()
    from harmony_agent.sandboxes.docker import OWNER_LABEL, SANDBOX_LABEL, docker_client
    from harmony_agent.sandboxes.images.desktop import DESKTOP_IMAGE

    client = docker_client()
    gone = subprocess.Popen(["true"])
    gone.wait()
    orphan = client.containers.run(
        DESKTOP_IMAGE,
        ["sleep", "600"],
        detach=True,
        network_mode="none",
        labels={SANDBOX_LABEL: "desktop", OWNER_LABEL: f"{socket.gethostname()}:{gone.pid}:1"},
    )
    try:
        display = VirtualDisplay(320, 240, sandbox="docker", window_manager=False, accessibility=False).start()
        display.stop()
        assert not client.containers.list(all=True, filters={"id": orphan.id})
    finally:
        try:
            orphan.remove(force=True)
        except Exception:
            pass
