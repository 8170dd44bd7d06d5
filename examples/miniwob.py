"""MiniWoB++ episodes for the browser tool: the task pages from the ``miniwob`` package, served on 127.0.0.1.

Two players solve the same seeded episodes:

- :func:`text_policy`, a stand-in for gpt-oss that reads **only the browser
  tool's text view** (through ``Agent`` + ``PolicyModel`` + ``BrowserTool``)
  and acts through the tool's markers, as the model would;
- :func:`selector_oracle`, Playwright driven by CSS selectors with full
  knowledge of each task's DOM: the ceiling.

An episode is seeded by a script the server adds to the task page
(``Math.seedrandom(seed)``, train data mode, and a longer time limit, since
the agent loop's own overhead is not what is measured). Success is MiniWoB's
own raw reward, ``WOB_RAW_REWARD_GLOBAL == 1``.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from openai_harmony import Message, Role

#: Tasks a text-only reader can solve; each has a handler below and in the selector oracle.
TASKS = [
    "click-button",
    "click-link",
    "click-dialog",
    "click-checkboxes",
    "click-option",
    "click-tab",
    "click-collapsible",
    "enter-text",
    "enter-password",
    "focus-text",
    "login-user",
    "choose-list",
    "use-autocomplete",
    "navigate-tree",
    "search-engine",
    "email-inbox",
    # controls the view and actions once missed: a multi-select list, date and time inputs, a key-driven
    # terminal, a spinner's icon-only arrows, and buttons that may partly cover each other
    "click-scroll-list",
    "enter-date",
    "enter-time",
    "terminal",
    "use-spinner",
    "click-button-sequence",
]
#: Left out: they need a canvas, dragging, colours or pixel positions, which a text view does not carry.
SKIPPED = {
    "bisect-angle": "canvas",
    "circle-center": "canvas",
    "click-color": "colour",
    "click-pie": "canvas",
    "click-shape": "canvas shapes",
    "count-shape": "canvas shapes",
    "drag-box": "drag",
    "drag-items": "drag",
    "drag-shapes": "drag",
    "drag-sort-numbers": "drag",
    "highlight-text": "text selection by drag",
    "identify-shape": "canvas shapes",
    "resize-textarea": "drag",
    "right-angle": "canvas",
    "simon-says": "colour and timing",
    "tic-tac-toe": "canvas",
    "visual-addition": "canvas images",
    "grid-coordinate": "pixel grid",
    "find-midpoint": "canvas",
    "ascending-numbers": "pixel positions",
}
EPISODE_SECONDS = 30


def miniwob_html() -> Path:
    """The task pages shipped in the ``miniwob`` wheel."""
    from importlib import metadata

    try:  # by distribution, not `import miniwob`, which a script named miniwob.py would shadow
        folder = Path(str(metadata.distribution("miniwob").locate_file("miniwob/html")))
    except metadata.PackageNotFoundError:
        raise RuntimeError("the miniwob package is not installed: pip install 'harmony-agent[dev]'") from None
    if not (folder / "core" / "core.js").is_file():
        raise RuntimeError(f"the miniwob package has no task pages at {folder}")
    return folder


def _seed_script(seed: str, seconds: int) -> bytes:
    return (
        f"<script>Math.seedrandom({json.dumps(seed)}); core.setDataMode('train');"
        f"core.EPISODE_MAX_TIME = Math.max(core.EPISODE_MAX_TIME, {seconds * 1000});</script>"
    ).encode()


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files, with the seeding script added to a task page asked for with ``?seed=``."""

    seconds = EPISODE_SECONDS

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        seed = re.search(r"(?:^|&)seed=([\w-]+)", query)
        if not seed or not path.endswith(".html"):
            return super().do_GET()
        file = Path(self.translate_path(path))
        if not file.is_file():
            return self.send_error(404)
        body = file.read_bytes().replace(b"</body>", _seed_script(seed.group(1), self.seconds) + b"</body>", 1)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that closes a connection mid-transfer (a finished episode) is not an error worth printing."""
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serve_miniwob(seconds: int = EPISODE_SECONDS) -> Iterator[str]:
    """Serve MiniWoB's pages on 127.0.0.1; yields the base URL (task pages are ``{base}/miniwob/{task}.html``)."""
    handler = type("Handler", (_Handler,), {"seconds": seconds})
    server = _Server(("127.0.0.1", 0), functools.partial(handler, directory=str(miniwob_html())))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def episode_url(base: str, task: str, seed: int) -> str:
    return f"{base}/miniwob/{task}.html?seed={seed}"


REWARD_SCRIPT = "() => [WOB_DONE_GLOBAL, WOB_RAW_REWARD_GLOBAL, core.getUtterance()]"


# -- the text-only policy ------------------------------------------------------

_MARKER = re.compile(r"【(\d+)†([^】]*)】")
_FOCUSED = re.compile(r" \(focused\)$|, focused(?=\)$)")


class View:
    """One tool output as the model sees it: its lines, its markers, and the flattened text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = [m.group(1) for m in re.finditer(r"^L\d+: (.*)$", text, re.MULTILINE)]
        self.flat = " ".join(line for line in self.lines if not line.startswith("On top of "))
        # Marker texts less the focus note, which any element may carry (the focused one is kept apart).
        found = [(int(m.group(1)), m.group(2)) for m in _MARKER.finditer("\n".join(self.lines))]
        self.markers = [(marker_id, _FOCUSED.sub("", text)) for marker_id, text in found]
        self.focused = next((marker_id for marker_id, text in found if _FOCUSED.search(text)), None)

    def find(self, label: str | re.Pattern | Callable[[str], bool], after: int | None = None) -> int | None:
        """The id of the first marker whose text is ``label`` (or matches it), optionally after marker id ``after``."""
        seen = after is None
        for marker_id, text in self.markers:
            if not seen:
                seen = marker_id == after
                continue
            if (
                label == text
                if isinstance(label, str)
                else label.fullmatch(text)
                if isinstance(label, re.Pattern)
                else label(text)
            ):
                return marker_id
        return None

    def field(self, kind: str, index: int = 0) -> int | None:
        """The id of the ``index``-th marker of a kind (``input``, ``password input``, ``checkbox``...)."""
        found = [i for i, text in self.markers if re.match(rf"(?:\w+ )?{kind}\b", text)]
        return found[index] if index < len(found) else None


def _call(name: str, arguments: dict[str, Any], note: str = "") -> str:
    thought = f"<|channel|>analysis<|message|>{note}<|end|><|start|>assistant" if note else ""
    return f"{thought}<|channel|>analysis to=browser.{name} <|constrain|>json<|message|>{json.dumps(arguments)}<|call|>"


def _final(text: str) -> str:
    return f"<|channel|>final<|message|>{text}<|return|>"


Action = tuple[str, dict[str, Any]] | tuple[str, dict[str, Any], str]


def _type_then(view: View, fields: list[tuple[int | None, str]], submit: int | None) -> Action | None:
    """Type each value whose field does not show it yet (passwords show as bullets), then click ``submit``."""
    for field_id, value in fields:
        if field_id is None:
            return None
        shown = next(text for i, text in view.markers if i == field_id)
        current = re.search(r'= "(.*)"', shown)
        current_value = current.group(1) if current else ""
        if current_value != value and not (shown.startswith("password") and current_value == "•" * len(value)):
            return ("type", {"id": field_id, "text": value})
    return ("click", {"id": submit}) if submit is not None else None


def _solve(task: str, view: View, notes: str) -> Action | None:
    """The next action for ``task`` from the current view alone (and the policy's own notes); None: give up."""
    q = view.flat
    submit = view.find(re.compile(r"button: (Submit|submit)"))
    if task == "click-button":
        m = re.search(r'Click on the "(.+?)" button\.', q)
        return m and ("click", {"id": view.find(f"button: {m.group(1)}")})
    if task == "click-link":
        m = re.search(r'Click on the link "(.+?)"\.', q)
        return m and ("click", {"id": view.find(m.group(1))})
    if task == "click-dialog":
        return ("click", {"id": view.find("button: Close")})
    if task in ("click-checkboxes", "click-option"):
        m = re.search(r"Select (.*?) and click Submit\.", q)
        if not m:
            return None
        wanted = set() if m.group(1) == "nothing" else set(re.split(r", | and ", m.group(1)))
        for marker_id, text in view.markers:
            box = re.fullmatch(r"(checkbox|radio) (\[x\]|\[ \]|\(\*\)|\( \)) (.*)", text)
            if box and (box.group(3) in wanted) != (box.group(2) in ("[x]", "(*)")):
                return ("check", {"id": marker_id, "checked": box.group(3) in wanted})
        return ("click", {"id": submit})
    if task == "click-tab":
        m = re.search(r"Click on (Tab #\d+)\.", q)
        return m and ("click", {"id": view.find(re.compile(rf"(tab: )?{re.escape(m.group(1))}( \(.*\))?"))})
    if task == "click-collapsible":
        folded = view.find(re.compile(r"tab: .*\(collapsed\)"))
        return ("click", {"id": folded if folded is not None else submit})
    if task == "enter-text":
        m = re.search(r'Enter "(.*?)" into the text field and press Submit\.', q)
        return m and _type_then(view, [(view.field("input"), m.group(1))], submit)
    if task == "enter-password":
        m = re.search(r'Enter the password "(.*?)" into both text fields', q)
        return m and _type_then(
            view, [(view.field("password input", 0), m.group(1)), (view.field("password input", 1), m.group(1))], submit
        )
    if task == "focus-text":
        return ("click", {"id": view.field("input")})
    if task == "login-user":
        m = re.search(r'Enter the username "(.*?)" and the password "(.*?)"', q)
        return m and _type_then(
            view,
            [(view.field("input"), m.group(1)), (view.field("password input"), m.group(2))],
            view.find("button: Login"),
        )
    if task == "choose-list":
        m = re.search(r"Select (.*?) from the list and click Submit\.", q)
        select = view.field("select")
        chosen = next((text for i, text in view.markers if i == select), "")
        if m and select is not None and not re.search(rf"= {re.escape(m.group(1))};", chosen):
            return ("select", {"id": select, "option": m.group(1)})
        return ("click", {"id": submit})
    if task == "use-autocomplete":
        return _autocomplete(view, q, submit)
    if task == "navigate-tree":
        m = re.search(r'named "(.*?)"\.', q)
        if not m:
            return None
        target = view.find(m.group(1))
        if target is not None:
            return ("click", {"id": target})
        folded = view.find(re.compile(r"\[.*expandable-hitarea.*\]"))
        return folded is not None and ("click", {"id": folded})
    if task == "search-engine":
        return _search_engine(view, q, notes)
    if task == "email-inbox":
        return _email(view, q)
    return _solve_controls(task, view, q, submit, notes)


def _value_of(view: View, field_id: int | None) -> str | None:
    shown = next((text for i, text in view.markers if i == field_id), "")
    value = re.search(r'= "(.*?)"', shown)
    return value.group(1) if value else None


def _solve_controls(task: str, view: View, q: str, submit: int | None, notes: str) -> Action | None:
    """The tasks of the controls: each in the words a person would use, through the view's markers."""
    if task == "click-scroll-list":
        m = re.search(r"Select (.*?) from the scroll list and click Submit\.", q)
        select = view.field("select")
        if not m or select is None:
            return None
        wanted = m.group(1).split(", ")
        chosen = re.search(r" = (.*?); options:", next(text for i, text in view.markers if i == select))
        if chosen is None or set(chosen.group(1).split(" | ")) != set(wanted):
            return ("select", {"id": select, "options": wanted})
        return ("click", {"id": submit})
    if task in ("enter-date", "enter-time"):
        kind = task.split("-")[1]
        m = re.search(rf"Enter (.+?) as the {kind}", q)
        field = view.field(f"{kind} input")
        if not m or field is None:
            return None
        if not _value_of(view, field):
            return ("type", {"id": field, "text": m.group(1)})  # as the page wrote it: 09/10/2012, 8:22 AM
        return ("click", {"id": submit})
    if task == "click-button-sequence":
        if "Clicked ONE." not in notes:
            return ("click", {"id": view.find("button: ONE")}, "Clicked ONE.")
        return ("click", {"id": view.find("button: TWO")})
    if task == "use-spinner":
        m = re.search(r"Select (-?\d+) with the spinner", q)
        field = view.field("input")
        value = _value_of(view, field)
        if not m or value is None or not re.fullmatch(r"-?\d+", value):
            return None
        wanted, current = int(m.group(1)), int(value)
        if wanted == current:
            return ("click", {"id": submit})
        return ("click", {"id": view.find("[spinner-up]" if wanted > current else "[spinner-down]")})
    if task == "terminal":
        return _terminal(view, q)
    return None


def _terminal(view: View, q: str) -> Action | None:
    """List the files (``ls``), then remove the one the task names (``rm``), typing into the terminal."""
    field = view.field("input")
    if field is None:
        return None
    if "user$ ls" not in view.lines:
        return ("type", {"id": field, "text": "ls", "submit": True})
    listing = view.lines[view.lines.index("user$ ls") + 1].split()
    m = re.search(r"ending with the extension (\S+)", q)
    if m:
        extension = m.group(1).rstrip(".")
        matching = [name for name in listing if name.endswith(extension)]
    else:
        matching = [name for name in listing if "." not in name]
    return bool(matching) and ("type", {"id": field, "text": f"rm {matching[0]}", "submit": True})


def _autocomplete(view: View, q: str, submit: int | None) -> Action | None:
    m = re.search(r'starts with "(.*?)"(?: and ends with "(.*?)")?\.', q)
    box = view.field("input")
    if not m or box is None:
        return None
    start, end = m.group(1), m.group(2) or ""
    value = re.search(r'= "(.*?)"', next(text for i, text in view.markers if i == box)).group(1)
    if value.startswith(start) and value.endswith(end) and len(value) > len(start):
        return ("click", {"id": submit})
    choice = view.find(lambda text: text.startswith(start) and text.endswith(end), after=submit)
    if choice is not None and value == start:
        return ("click", {"id": choice})
    return ("type", {"id": box, "text": start})


def _search_engine(view: View, q: str, notes: str) -> Action | None:
    m = re.search(r'enter "(.*?)" and press "Search", then find and click the (\d+)\w\w search result\.', q)
    box, search = view.field("input"), view.find("button: Search")
    if not m or box is None:
        return None
    term, position = m.group(1), int(m.group(2))
    if f'= "{term}"' not in next(text for i, text in view.markers if i == box):
        return ("type", {"id": box, "text": term})
    # A result is a marker on a line of its own with its address on the next line.
    results = [
        int(r.group(1))
        for index, line in enumerate(view.lines[:-1])
        if (r := re.fullmatch(r"【(\d+)†[^】]*】", line)) and view.lines[index + 1].startswith("http")
    ]
    if not results:
        return ("click", {"id": search})
    page = (position - 1) // 3 + 1
    if page > 1 and f"results page {page}" not in notes:
        pager = view.find(re.compile(rf"\* ?{page}|{page}"), after=results[-1])
        return pager is not None and ("click", {"id": pager}, f"Going to results page {page}.")
    return ("click", {"id": results[(position - 1) % 3]})


def _email(view: View, q: str) -> Action | None:
    m = re.search(
        r"Find the email by (.+?) and (forward that email to (.+?)\.|reply to them with the text \"(.*?)\"\."
        r"|click the (trash|star) icon)",
        q,
    )
    if not m:
        return None
    sender = m.group(1)
    if m.group(5):  # an icon on the inbox row
        row = view.find(sender)
        icon = row is not None and view.find(f"[{m.group(5)}]", after=row)
        return icon is not None and icon is not False and ("click", {"id": icon})
    to_box = view.field("input")  # the forward form's recipient
    if m.group(3):
        if to_box is not None:
            return _type_then(view, [(to_box, m.group(3))], view.find("[#send-forward]"))
        forward = view.find("Forward")
        return ("click", {"id": forward if forward is not None else view.find(sender)})
    reply_area = view.field("textarea")
    if reply_area is not None:
        return _type_then(view, [(reply_area, m.group(4))], view.find("[#send-reply]"))
    reply = view.find("Reply")
    return ("click", {"id": view.find(sender) if reply is None else reply})


def text_policy(messages: list[Message]) -> str:
    """The next assistant completion for a MiniWoB episode, from the conversation alone.

    The user's message names the task page. The policy opens it, clicks the
    START cover, then acts on each new view until the page reports the
    episode done, reading only the tool's text.
    """
    task_text = next(m.content[0].text for m in messages if m.author.role == Role.USER)
    url = re.search(r"https?://\S+", task_text).group(0)
    task = re.search(r"/miniwob/([\w-]+)\.html", url).group(1)
    tool_results = [m for m in messages if m.author.role == Role.TOOL]
    if not tool_results:
        return _call("open", {"id": url})
    view = View(tool_results[-1].content[0].text)
    if re.search(r"Episodes done: [1-9]", view.flat):
        return _final("The episode is done.")
    if "Error" in view.text[:200] and len(tool_results) > 25:
        return _final("Giving up: " + view.text[:200])
    start = view.find("START")
    if start is not None and "Last reward" in view.flat:
        return _call("click", {"id": start})
    notes = " ".join(
        m.content[0].text
        for m in messages
        if m.author.role == Role.ASSISTANT and m.channel == "analysis" and m.recipient is None
    )
    action = _solve(task, view, notes)
    if not action or action[1].get("id", 0) is None:
        return _call("wait", {"seconds": 0.5})  # nothing to act on yet: look again
    return _call(action[0], action[1], action[2] if len(action) > 2 else "")


async def run_text_episode(
    base: str, task: str, seed: int, *, max_steps: int = 30, transcript: Path | None = None, **browser_options: Any
) -> dict[str, Any]:
    """One episode through Agent + PolicyModel(text_policy) + BrowserTool; MiniWoB's verdict and the tool calls' latency."""
    import time

    from harmony_agent import Agent, PolicyModel
    from harmony_agent.tools.browser import BrowserTool, NavigationPolicy

    browser = BrowserTool(
        policy=NavigationPolicy(allow_domains=["127.0.0.1"], allow_addresses=["127.0.0.1"]), **browser_options
    )
    latencies: list[float] = []
    original = browser.process

    async def timed(call: Any) -> Any:
        started = time.perf_counter()
        try:
            return await original(call)
        finally:
            latencies.append(time.perf_counter() - started)

    browser.process = timed  # type: ignore[method-assign]
    url = episode_url(base, task, seed)
    async with Agent(
        PolicyModel(text_policy), tools=[browser], reasoning="low", max_steps=max_steps, transcript=transcript
    ) as agent:
        result = await agent.arun(f"Solve the web task on this page: {url}")
        done, reward, utterance = False, None, ""
        if browser.session is not None and browser.session.page is not None:
            # The page lives on the session's own event loop: read MiniWoB's verdict there.
            with contextlib.suppress(Exception):
                done, reward, utterance = await agent.default_session.perform(
                    browser.session.page.evaluate(REWARD_SCRIPT)
                )
    return {
        "task": task,
        "seed": seed,
        "done": bool(done),
        "reward": reward,
        "solved": bool(done) and reward == 1,
        "utterance": utterance,
        "steps": len(latencies),
        "latencies": latencies,
        "stop": result.stop_reason,
    }
