"""The boundaries battery: attacks on every surface someone else stands on the other side of.

Each row is one attack, run for real on this machine (127.0.0.1 only): what was tried, whether it was
contained, and what it left behind (sandbox containers and processes, Chromium processes, files outside
the attack's own folder). The surfaces:

- the terminal: escape sequences in text a model, a tool or a page wrote (``cli.console.visible``);
- reports: a transcript someone sent you, citing ``javascript:`` and ``data:`` pages, naming host files;
- ``serve``: a rebinding ``Host``, a cross-origin text/plain POST, a foreign ``Origin``, a 5 MB body,
  JSON nested 10,000 deep, ``/files`` without the key;
- task files: a 370-byte billion laughs, a results file torn by a kill;
- the python sandbox (bubblewrap): a cell naming host files as its images, a symlink out of
  ``/mnt/data``;
- the desktop (Xvfb): an app on one display grabbing another display's screen.

``tests/`` holds the same attacks one by one; this prints them as one table.

    .venv/bin/python benchmarks/boundaries.py [--quick]

``--quick`` leaves out the sandbox and desktop rows (they start a kernel, X servers).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import httpx

from harmony_agent import ScriptedModel
from harmony_agent import events as ev
from harmony_agent.cli.console import visible
from harmony_agent.runs.report import write_report
from harmony_agent.runs.tasks import TaskFileError, load_task_file
from harmony_agent.sandboxes._owner import owner_tag
from harmony_agent.sandboxes.docker import OWNER_LABEL
from harmony_agent.server import ServerConfig
from helpers.serving import running

SECRET = b"host-secret-7d2e: only the host may read this"
#: An attack: its name, and a function of a scratch folder that returns (contained, detail).
Attack = tuple[str, Callable[[Path], tuple[bool, str]]]


def _terminal(payload: str) -> Callable[[Path], tuple[bool, str]]:
    def attack(folder: Path) -> tuple[bool, str]:
        shown = visible(payload)
        raw = [c for c in shown if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0]
        return not raw, repr(shown[:40])

    return attack


TERMINAL: list[Attack] = [
    ("terminal: OSC 52 clipboard write", _terminal("\x1b]52;c;cm0gLXJmIH4=\x07")),
    ("terminal: OSC 0 window title", _terminal("\x1b]0;owned\x07")),
    ("terminal: OSC 8 hyperlink", _terminal("\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\")),
    ("terminal: clear screen", _terminal("\x1b[2J\x1b[H")),
    ("terminal: cursor up and overwrite", _terminal("ok\x1b[1A\x1b[2Kall tests passed")),
    ("terminal: 8-bit CSI", _terminal("\x9b2J")),
]


def _hostile_report(folder: Path) -> tuple[bool, str]:
    secret = folder.parent / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\n" + SECRET)
    views = ["[0] Evil (javascript:alert(1))\nL0: x", "[1] Data (data:text/html,<script>alert(2)</script>)\nL0: y"]
    events: list[ev.Event] = [ev.RunStartEvent(task="<script>alert(3)</script>", model="m", tools=["browser"])]
    for number, view in enumerate(views):
        events.append(
            ev.ToolResultEvent(call_id=str(number), recipient="browser.open", content=view, images=[str(secret)])
        )
    answer = "See 【0†L0】 and 【1†L0】 <img src=x onerror=alert(4)>"
    events += [
        ev.FinalEvent(text=answer),
        ev.RunEndEvent(stop_reason="final", steps=1, usage=ev.Usage(), final_text=answer),
    ]
    transcript = folder / "sent-to-you.jsonl"
    transcript.write_text("".join(e.model_dump_json() + "\n" for e in events))
    html = write_report(transcript).read_text()
    bad = [
        marker
        for marker in ('href="javascript:', 'href="data:', "<script>alert", "<img src=x onerror")
        if marker in html
    ]
    leaked = SECRET.hex()[:16] in html.encode().hex() or ("secret.png" in html and "base64" in html)
    return not bad and not leaked, ", ".join(bad) or ("host file embedded" if leaked else "links are text")


REPORTS: list[Attack] = [("report: hostile transcript (schemes, markup, host file)", _hostile_report)]


def _serve_attacks() -> list[Attack]:
    def probe(request: Callable[[httpx.Client, str, int], httpx.Response], expected: int) -> Callable:
        def attack(folder: Path) -> tuple[bool, str]:
            model = ScriptedModel(["<|channel|>final<|message|>ran<|return|>"] * 4)
            with running(ServerConfig(model, api_key="sesame")) as url, httpx.Client(timeout=30) as http:
                port = int(url.rsplit(":", 1)[1].split("/")[0])
                reply = request(http, url, port)
            return reply.status_code == expected, f"HTTP {reply.status_code} (expected {expected})"

        return attack

    key = {"Authorization": "Bearer sesame"}
    deep = "[" * 10_000 + "]" * 10_000
    return [
        ("serve: DNS-rebinding Host header", probe(lambda h, u, p: h.get(f"{u}/models", headers={**key, "Host": f"evil.example:{p}"}), 400)),
        ("serve: text/plain POST from a page", probe(lambda h, u, p: h.post(f"{u}/responses", content='{"input": "x"}', headers={**key, "Content-Type": "text/plain"}), 415)),
        ("serve: JSON POST from a foreign Origin", probe(lambda h, u, p: h.post(f"{u}/responses", json={"input": "x"}, headers={**key, "Origin": "http://evil.example"}), 403)),
        ("serve: a 5 MB body", probe(lambda h, u, p: h.post(f"{u}/responses", content=b"[" + b"1," * 2_500_000 + b"1]", headers={**key, "Content-Type": "application/json"}), 413)),
        ("serve: JSON nested 10,000 deep", probe(lambda h, u, p: h.post(f"{u}/responses", content=deep, headers={**key, "Content-Type": "application/json"}), 400)),
        ("serve: /files without the key", probe(lambda h, u, p: h.get(f"http://127.0.0.1:{p}/files/anything"), 401)),
    ]  # fmt: skip


def _billion_laughs(folder: Path) -> tuple[bool, str]:
    text = 'task: hello\nallow:\n  - &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for before, name in zip("abcdefgh", "bcdefghi"):
        text += f"  - &{name} [{','.join(['*' + before] * 9)}]\n"
    bomb = folder / "bomb.yaml"
    bomb.write_text(text)
    started = time.perf_counter()
    try:
        load_task_file(bomb)
    except TaskFileError as exc:
        return time.perf_counter() - started < 1, f"refused in {(time.perf_counter() - started) * 1000:.0f} ms: {exc}"[
            :80
        ]
    return False, "loaded"


def _torn_results(folder: Path) -> tuple[bool, str]:
    from harmony_agent.runs.batch import run_batch
    from harmony_agent.runs.factory import TaskAgentFactory

    task = folder / "task.yaml"
    (folder / "done.yaml").write_text("completions:\n  - '<|channel|>final<|message|>done<|return|>'\n")
    task.write_text(f"tasks:\n  - id: first\n    task: one\n    model: scripted:{folder / 'done.yaml'}\n"
                    f"  - id: second\n    task: two\n    model: scripted:{folder / 'done.yaml'}\n")  # fmt: skip
    specs = load_task_file(task)
    results = folder / "results.jsonl"
    asyncio.run(run_batch(specs[:1], TaskAgentFactory(), results=results))
    with results.open("a") as file:  # a kill in the middle of writing the next record
        file.write('{"id": "second", "repeat": 1, "passed": tr')
    asyncio.run(run_batch(specs, TaskAgentFactory(), results=results, resume=True))
    ids = [json.loads(line)["id"] for line in results.read_text().splitlines()]
    return ids == ["first", "second"], f"records {ids}, torn line set aside: {(folder / 'results.jsonl.torn').exists()}"


TASKS: list[Attack] = [
    ("task file: 370-byte billion laughs", _billion_laughs),
    ("batch: resume after a torn line", _torn_results),
]


def _sandbox_attacks() -> list[Attack]:
    from harmony_agent.sandboxes import LocalSandbox

    kernel = "import gc\nkernel = next(o for o in gc.get_objects() if type(o).__name__ == 'Kernel' and hasattr(o, 'images'))\n"

    def in_sandbox(code: Callable[[Path], str], names: Callable[[Path], list[str] | None]) -> Callable:
        def attack(folder: Path) -> tuple[bool, str]:
            secret = folder / "secret" / "passwd.png"
            secret.parent.mkdir()
            secret.write_bytes(SECRET)
            out = folder / "out"

            async def go() -> str:
                async with LocalSandbox(timeout=60) as box:
                    await box.execute(code(secret))
                    collected = await box.bring_home(out, names(secret) if names(secret) else None)
                    return f"{len(collected.files)} copied, {collected.skipped} refused"

            detail = asyncio.run(go())
            leaked = [p for p in out.rglob("*") if p.is_symlink() or (p.is_file() and SECRET in p.read_bytes())]
            return not leaked, detail

        return attack

    return [
        ("sandbox: a cell names host files as its images",
         in_sandbox(lambda s: kernel + f"kernel.images.extend([{str(s)!r}, '/etc/passwd'])", lambda s: [str(s), "/etc/passwd"])),
        ("sandbox: a symlink out of /mnt/data", in_sandbox(lambda s: f"import os\nos.symlink({str(s)!r}, 'leak.png')", lambda s: None)),
    ]  # fmt: skip


def _desktop_attacks() -> list[Attack]:
    def other_display(folder: Path) -> tuple[bool, str]:
        """An app on display A (with A's environment: its name and cookie) dumps display B's screen."""
        from harmony_agent.sandboxes.display import VirtualDisplay

        first, second = (VirtualDisplay(320, 240, window_manager=False, accessibility=False) for _ in range(2))
        try:
            first.start()
            second.start()
            dump = ["xwd", "-root", "-silent", "-display"]
            own = subprocess.run([*dump, first.display or ""], env=first.env(), capture_output=True, timeout=20)
            other = subprocess.run([*dump, second.display or ""], env=first.env(), capture_output=True, timeout=20)
        finally:
            first.stop()
            second.stop()
        refused = other.returncode != 0 and not other.stdout
        said = other.stderr.decode(errors="replace").strip().splitlines()
        return (
            refused and own.returncode == 0,
            f"own screen {len(own.stdout)} bytes; other: {said[-1] if said else 'dumped'}",
        )

    return [("desktop: an app grabs another display's screen", other_display)]


def _descendants() -> list[str]:
    """The names of this process's live descendants (what an attack started and left running)."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            text = stat.read_text()
            pid = int(stat.parent.name)
            parents[pid], names[pid] = int(text.rsplit(")", 1)[1].split()[1]), text.split("(", 1)[1].rsplit(")", 1)[0]
    mine, found = {os.getpid()}, []  # (pid, name)
    for _ in range(8):  # a few generations deep
        children = {pid for pid, parent in parents.items() if parent in mine} - mine
        found += [(pid, names[pid]) for pid in children]
        mine |= children
    return [name for pid, name in found if not _is_watchdog(pid)]


def _is_watchdog(pid: int) -> bool:
    """The sandboxes' watchdog lives as long as this process, by design (``sandboxes/watchdog.py``)."""
    from harmony_agent.sandboxes.watchdog import HELPER

    with contextlib.suppress(OSError):
        return HELPER.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    return False


def leftovers() -> dict[str, int]:
    """What an attack could leave behind: this process's sandbox containers, and its child processes."""
    containers = 0
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        label = f"label={OWNER_LABEL}={owner_tag()}"
        done = subprocess.run(["docker", "ps", "-q", "--filter", label], capture_output=True, text=True, timeout=20)
        containers = len(done.stdout.split())
    return {"containers": containers, "processes": len(_descendants())}


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        attack_folder = Path(folder) / "attack"
        attack_folder.mkdir()
        yield attack_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="leave out the sandbox and desktop rows")
    args = parser.parse_args()
    attacks = (
        TERMINAL + REPORTS + _serve_attacks() + TASKS + ([] if args.quick else _sandbox_attacks() + _desktop_attacks())
    )
    before = leftovers()
    print(f"{'attack':<58} {'contained':>9}  detail")
    contained = 0
    for name, attack in attacks:
        with scratch() as folder:
            try:
                ok, detail = attack(folder)
            except Exception as exc:  # an attack that crashes the surface is not contained
                ok, detail = False, f"crashed: {type(exc).__name__}: {exc}"[:80]
        contained += ok
        print(f"{name:<58} {'yes' if ok else 'NO':>9}  {visible(detail)[:70]}")
    time.sleep(1)
    after = leftovers()
    left = {what: after[what] - before[what] for what in before if after[what] > before[what]}
    print(f"\ntried {len(attacks)}, contained {contained}, not contained {len(attacks) - contained}, "
          f"left behind: {left or 'nothing'}")  # fmt: skip
    sys.exit(0 if contained == len(attacks) and not left else 1)


if __name__ == "__main__":
    main()
