"""``ComputerTool``: desktop control on a VirtualDisplay for a text-only model.

The model sees the screen through ``observe``: the windows with their
absolute geometry, the focused window's accessibility tree where its app
exposes one, and its text by OCR, each element and line with the point to
click. It acts with function tools: click (at a point, or on text
it was shown), move, drag, scroll, type, keys, wait and launching allowed
apps. Pointer, keys and text go through XTest on a connection this tool
owns (``xclient.py``: a worker holding the display's cookie), so two tools
in one process never act on each other's display, and the process
environment is never changed.
Every point is checked against the display's bounds (booleans are not
coordinates), and a screenshot is saved after each action when a folder is given.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from openai_harmony import ToolDescription
from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from harmony_agent.sandboxes import SandboxError
from harmony_agent.sandboxes.display import VirtualDisplay
from harmony_agent.tools.base import FUNCTIONS_NAMESPACE, Tool, ToolCall, ToolError, ToolResult
from harmony_agent.tools.computer.accessibility import AccessibilityReader, AccessibleNode
from harmony_agent.tools.computer.ocr import OcrEngine
from harmony_agent.tools.computer.screen import Screen, TextLine
from harmony_agent.tools.computer.x_worker import key_symbols
from harmony_agent.tools.computer.xclient import DisplayClient
from harmony_agent.tools.functions import FunctionTool

MAX_WAIT_SECONDS = 10.0


def _not_a_boolean(value: object) -> object:
    """JSON's true and false are not pixel counts, though Python would take them for 1 and 0."""
    if isinstance(value, bool):
        raise ValueError("a coordinate is a number of pixels, not true or false")
    return value


class Pixel(int):
    """A pixel position: an integer, described as one, that refuses booleans (pydantic's lax mode takes true for 1).

    A class rather than ``Annotated[int, ...]``, so the check survives
    type-hint resolution that drops annotations' extras.
    """

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_before_validator_function(_not_a_boolean, core_schema.int_schema())


class ComputerTool(Tool):
    """Mouse, keyboard and a text view of the screen, on a display of the agent's own.

    ``display`` is a :class:`VirtualDisplay` (started here if it is not yet);
    ``apps`` maps names the model may launch to command lines;
    ``screenshots`` is a folder for a screenshot after each action;
    ``ocr`` an OCR engine (``ocr.Tesseract()`` by default, ``ocr.RapidOcr()`` is the alternative measured).
    """

    namespace = FUNCTIONS_NAMESPACE

    def __init__(
        self,
        display: VirtualDisplay | None = None,
        *,
        apps: Mapping[str, Sequence[str]] | None = None,
        screenshots: str | Path | None = None,
        ocr_scale: int = 2,
        ocr: OcrEngine | None = None,
    ) -> None:
        self.display = display or VirtualDisplay()
        self.apps = {name: list(command) for name, command in (apps or {}).items()}
        self.screenshots = Path(screenshots) if screenshots else None
        self.screen = Screen(self.display, scale=ocr_scale, ocr=ocr)
        self._last_lines: list[TextLine] = []
        self._last_nodes: list[AccessibleNode] = []
        self._previous: list[str] | None = None  # the last observation's lines, for observe(changes=True)
        self._reader: AccessibilityReader | None = None
        self._actions = 0
        self._lock = threading.Lock()
        functions: list[Callable[..., Any]] = [
            self.observe,
            self.click,
            self.double_click,
            self.right_click,
            self.move,
            self.drag,
            self.scroll,
            self.type_text,
            self.key,
            self.wait,
        ]
        if self.apps:
            functions.append(self.launch)
        self._functions = {f.__name__: FunctionTool(f) for f in functions}

    # -- the Tool interface ---------------------------------------------------

    def fresh(self) -> ComputerTool:
        """A new, unstarted ComputerTool with a display of its own (same size, sandbox and apps) for another session."""
        try:
            display = self.display.fresh()
        except SandboxError as exc:
            raise ToolError(str(exc)) from None
        return ComputerTool(display, apps=self.apps, screenshots=self.screenshots, ocr_scale=self.screen.scale)

    def descriptions(self) -> list[ToolDescription]:
        descriptions = [d for function in self._functions.values() for d in function.descriptions()]
        if "launch" in self._functions:
            launch = descriptions[-1]
            descriptions[-1] = ToolDescription.new(
                launch.name,
                f"{launch.description} Allowed: {', '.join(sorted(self.apps))}.",
                parameters=launch.parameters,
            )
        return descriptions

    def recipients(self) -> list[str]:
        return [f"{FUNCTIONS_NAMESPACE}.{name}" for name in self._functions]

    async def start(self) -> str | None:
        await asyncio.to_thread(self._ensure_display)
        await asyncio.to_thread(self.screen.x.start)  # the X worker: ~0.2 s not paid by the first action
        return f"computer tool: display {self.display.display} ({self.display.width}x{self.display.height})"

    async def _process(self, call: ToolCall) -> ToolResult:
        function = self._functions.get(call.name)
        if function is None:
            raise ToolError(f"the computer tool has no function {call.name!r}")
        try:
            return await function._process(call)
        except SandboxError as exc:
            raise ToolError(str(exc)) from None

    async def aclose(self) -> None:
        self.screen.close()
        if self._reader is not None:
            self._reader.close()
        await asyncio.to_thread(self.display.stop)

    # -- helpers --------------------------------------------------------------

    def _ensure_display(self) -> None:
        if not self.display.started:
            self.display.start()

    def _gui(self) -> DisplayClient:
        """This tool's own X connection to its display, shared with its screen (its worker starts on first use)."""
        self._ensure_display()
        return self.screen.x

    def _point(self, x: int | None, y: int | None, text: str | None) -> tuple[int, int]:
        if text:
            return self._find_text(text)
        if x is None or y is None:
            raise ToolError("give either x and y, or the text to click on")
        if not (0 <= x < self.display.width and 0 <= y < self.display.height):
            raise ToolError(
                f"({x}, {y}) is outside the screen, which is {self.display.width}x{self.display.height}; "
                "nothing was done"
            )
        return x, y

    def _accessible(self, window_title: str | None) -> list[AccessibleNode]:
        if self.display.session_bus is None:
            return []
        if self._reader is None:
            self._reader = AccessibilityReader(self.display.session_bus)
        return self._reader.read(window_title)

    def _find_text(self, text: str) -> tuple[int, int]:
        wanted = text.casefold().strip()
        for nodes in (self._last_nodes, None):  # exact names from the accessibility tree first
            if nodes is None:
                nodes = self._accessible(None)
            named = [n for n in nodes if n.name.casefold() == wanted] or [
                n for n in nodes if wanted in n.name.casefold()
            ]
            if named:
                return named[0].center
        for region in (None, "focused", "screen"):
            if region is not None:  # not seen since the last action: read the focused window again, then everything
                self._look(region)
            lines = self._last_lines
            exact = [line for line in lines if line.text.casefold() == wanted]
            partial = [line for line in lines if wanted in line.text.casefold()]
            found = exact or partial
            if found:
                return found[0].center
        raise ToolError(f"no text {text!r} is visible on the screen; observe again, or click by coordinates")

    def _after_action(self, did: str) -> ToolResult:
        """Say what was done, and keep a screenshot of the result (saved off the action's critical path)."""
        self._actions += 1
        self._last_lines, self._last_nodes = [], []  # the screen changed: what was found before may have moved
        images: tuple[str, ...] = ()
        if self.screenshots is not None:
            self.screenshots.mkdir(parents=True, exist_ok=True)
            path = self.screenshots / f"action-{self._actions:04d}-{int(time.time() * 1000)}.png"
            image = self.screen.grab()
            threading.Thread(target=image.save, args=(path,), daemon=True).start()
            images = (str(path),)
        return ToolResult(output=did, images=images)

    # -- the functions the model calls -----------------------------------------

    def observe(self, region: Literal["focused", "screen"] = "focused", changes: bool = False) -> str:
        """Describe the screen as text: the windows with their positions, the focused window's accessibility tree,
        its text by OCR and its elements without text (empty fields, boxes), each with the point to click it.

        Args:
            region: "focused" to read the focused window (faster), or "screen" to read everything.
            changes: Report only what changed since the last observation (lines added with +, gone with -).
        """
        with self._lock:
            lines = self._look(region)
            previous, self._previous = self._previous, lines
        if not changes or previous is None:
            return "\n".join(lines)
        before, after = set(previous), set(lines)
        added = [f"+ {line}" for line in lines if line not in before]
        gone = [f"- {line}" for line in previous if line not in after]
        if not added and not gone:
            return f"{lines[0]} Nothing changed since the last observation."
        return "\n".join([f"{lines[0]} Changes since the last observation:", *added, *gone])

    def _look(self, region: Literal["focused", "screen"]) -> list[str]:
        """Read the screen (under the lock) and keep what was read for clicks by text; the description's lines."""
        self._ensure_display()
        windows = self.screen.windows()
        focused = next((w for w in windows if w.focused), None)
        if region == "focused" and focused is not None:
            area: tuple[int, int, int, int] | None = (focused.x, focused.y, focused.width, focused.height)
            where = f'the focused window "{focused.title}"'
        else:
            area, where = None, "the whole screen"
        self._last_nodes = self._accessible(focused.title if area is not None and focused is not None else None)
        self._last_lines = self.screen.read_text(area)
        elements = []
        if area is not None and focused is not None and not self._last_nodes:
            boxes = [(line.left, line.top, line.width, line.height) for line in self._last_lines]
            elements = self.screen.untexted(focused.id, boxes)
            small = [e for e in elements if e.width <= 400 and e.height <= 60]
            if small:  # a second look at boxes without text: single characters on buttons, a display's digits
                found, still = self.screen.read_boxes(small)
                elements = [e for e in elements if e not in small] + still
                self._last_lines = sorted(self._last_lines + found, key=lambda t: (t.top, t.left))
        out = [f"Screen {self.display.width}x{self.display.height}."]
        if windows:
            out.append("Windows:")
            out += [
                f'- "{w.title}" at ({w.x}, {w.y}), {w.width}x{w.height}{" [focused]" if w.focused else ""}'
                for w in windows
            ]
        else:
            out.append("No windows are open.")
        if self._last_nodes:
            out.append(f"Accessibility tree of {where} (exact names; click an element at the point shown):")
            out += [node.describe() for node in self._last_nodes]
        out.append(f"Text in {where} (OCR; click a line at the point shown):")
        if self._last_lines:
            out += [f'- "{line.text}" at ({line.center[0]}, {line.center[1]})' for line in self._last_lines]
        else:
            out.append("- (no text found)")
        if elements:
            out.append(f"Elements without text in {where} (empty fields, boxes, bars; click at the point shown):")
            out += [element.describe() for element in elements]
        return out

    def click(
        self,
        x: Pixel | None = None,
        y: Pixel | None = None,
        text: str | None = None,
        button: Literal["left", "right", "middle"] = "left",
    ) -> ToolResult:
        """Click at a point, or on a line of text seen by observe.

        Args:
            x: Horizontal position in pixels from the left.
            y: Vertical position in pixels from the top.
            text: Visible text to click on instead of coordinates.
            button: Which mouse button.
        """
        return self._click(x, y, text, button, 1)

    def double_click(self, x: Pixel | None = None, y: Pixel | None = None, text: str | None = None) -> ToolResult:
        """Double-click at a point, or on a line of text seen by observe.

        Args:
            x: Horizontal position in pixels.
            y: Vertical position in pixels.
            text: Visible text to double-click on instead of coordinates.
        """
        return self._click(x, y, text, "left", 2)

    def right_click(self, x: Pixel | None = None, y: Pixel | None = None, text: str | None = None) -> ToolResult:
        """Right-click at a point, or on a line of text seen by observe.

        Args:
            x: Horizontal position in pixels.
            y: Vertical position in pixels.
            text: Visible text to right-click on instead of coordinates.
        """
        return self._click(x, y, text, "right", 1)

    def _click(self, x: int | None, y: int | None, text: str | None, button: str, clicks: int) -> ToolResult:
        with self._lock:
            point = self._point(x, y, text)
            gui = self._gui()
            gui.move(*point)
            time.sleep(0.02)  # the pointer arrives, then the press: as a hand on a mouse does
            gui.click(button, clicks)
            what = {1: "clicked", 2: "double-clicked"}[clicks] if button != "right" else "right-clicked"
            return self._after_action(f"{what} at ({point[0]}, {point[1]})" + (f' on "{text}"' if text else ""))

    def move(self, x: Pixel, y: Pixel) -> ToolResult:
        """Move the pointer to a point (to hover).

        Args:
            x: Horizontal position in pixels.
            y: Vertical position in pixels.
        """
        with self._lock:
            point = self._point(x, y, None)
            self._gui().move(*point)
            return self._after_action(f"moved the pointer to ({point[0]}, {point[1]})")

    def drag(self, from_x: Pixel, from_y: Pixel, to_x: Pixel, to_y: Pixel) -> ToolResult:
        """Press the left button at one point, move to another and release (drag and drop, select text).

        Args:
            from_x: Start, horizontal.
            from_y: Start, vertical.
            to_x: End, horizontal.
            to_y: End, vertical.
        """
        with self._lock:
            start, end = self._point(from_x, from_y, None), self._point(to_x, to_y, None)
            gui = self._gui()
            gui.move(*start)
            gui.button("left", True)
            gui.glide(*end, seconds=0.2)
            gui.button("left", False)
            return self._after_action(f"dragged from {start} to {end}")

    def scroll(
        self, direction: Literal["up", "down"] = "down", amount: int = 3, x: Pixel | None = None, y: Pixel | None = None
    ) -> ToolResult:
        """Scroll the mouse wheel, over a point if given (else where the pointer is).

        Args:
            direction: up or down.
            amount: How many wheel steps (1 to 50).
            x: Horizontal position to scroll over.
            y: Vertical position to scroll over.
        """
        if not 1 <= amount <= 50:
            raise ToolError("amount must be between 1 and 50 wheel steps")
        with self._lock:
            gui = self._gui()
            if x is not None or y is not None:
                gui.move(*self._point(x, y, None))
            gui.scroll(amount if direction == "up" else -amount)
            return self._after_action(f"scrolled {direction} {amount} steps")

    def type_text(self, text: str) -> ToolResult:
        """Type text into the focused field (any characters, Unicode included). Click the field first.

        Args:
            text: What to type.
        """
        if not text:
            raise ToolError("nothing to type")
        with self._lock:
            try:
                self._gui().type_text(text)
            except Exception as exc:
                raise ToolError(f"typing failed: {exc}") from None
            return self._after_action(f"typed {len(text)} characters")

    def key(self, keys: str) -> ToolResult:
        """Press a key or a chord, like "enter", "tab", "esc", "ctrl+a", "ctrl+shift+t" or "alt+f4".

        Args:
            keys: Key names joined by "+".
        """
        try:
            symbols = key_symbols(keys)
        except ValueError as exc:
            raise ToolError(str(exc)) from None
        with self._lock:
            self._gui().chord(symbols)
            return self._after_action(f"pressed {keys.strip().lower()}")

    def wait(self, seconds: float = 1.0) -> str:
        """Wait for the screen to settle (an app starting, a page loading).

        Args:
            seconds: How long, at most 10.
        """
        if not 0 <= seconds <= MAX_WAIT_SECONDS:
            raise ToolError(f"wait between 0 and {MAX_WAIT_SECONDS:g} seconds")
        time.sleep(seconds)
        return f"waited {seconds:g} s"

    def launch(self, app: str) -> str:
        """Start an application on the screen.

        Args:
            app: The application's name.
        """
        command = self.apps.get(app)
        if command is None:
            raise ToolError(f"{app!r} is not an allowed application; allowed: {', '.join(sorted(self.apps))}")
        with self._lock:
            self._ensure_display()
            self.display.launch(command)
        return f"launched {app}; wait a moment, then observe"
