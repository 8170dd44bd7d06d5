"""``ComputerTool``: desktop control on a VirtualDisplay for a text-only model.

The model sees the screen through ``observe``: the windows with their
absolute geometry, the focused window's accessibility tree where its app
exposes one, and its text by OCR, each element and line with the point to
click. It acts with function tools: click (at a point, or on text
it was shown), move, drag, scroll, type, keys, wait and launching allowed
apps. pyautogui moves the pointer and presses keys; text is typed through XTest
keysym by keysym (``keyboard.py``), because pyautogui drops characters
outside ASCII and ``xdotool type`` mangles upper-case ones.
Every point is checked against the display's bounds, and a screenshot is
saved after each action when a folder is given.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from openai_harmony import ToolDescription

from sandboxes import SandboxError
from sandboxes.display import VirtualDisplay

from ..base import FUNCTIONS_NAMESPACE, Tool, ToolCall, ToolError, ToolResult
from ..functions import FunctionTool
from .accessibility import AccessibilityReader, AccessibleNode
from .keyboard import type_text
from .screen import Screen, TextLine, bind_process_to

MAX_WAIT_SECONDS = 10.0
KEY_ALIASES = {"return": "enter", "control": "ctrl", "escape": "esc", "page_up": "pageup", "page_down": "pagedown",
               "super": "win", "cmd": "win", "del": "delete", "arrowup": "up", "arrowdown": "down",
               "arrowleft": "left", "arrowright": "right"}


class ComputerTool(Tool):
    """Mouse, keyboard and a text view of the screen, on a display of the agent's own.

    ``display`` is a :class:`VirtualDisplay` (started here if it is not yet);
    ``apps`` maps names the model may launch to command lines;
    ``screenshots`` is a folder for a screenshot after each action.
    """

    namespace = FUNCTIONS_NAMESPACE

    def __init__(self, display: VirtualDisplay | None = None, *, apps: Mapping[str, Sequence[str]] | None = None,
                 screenshots: str | Path | None = None, ocr_scale: int = 2) -> None:
        self.display = display or VirtualDisplay()
        self.apps = {name: list(command) for name, command in (apps or {}).items()}
        self.screenshots = Path(screenshots) if screenshots else None
        self.screen = Screen(self.display, scale=ocr_scale)
        self._last_lines: list[TextLine] = []
        self._last_nodes: list[AccessibleNode] = []
        self._reader: AccessibilityReader | None = None
        self._actions = 0
        self._lock = threading.Lock()
        self._pyautogui: Any = None
        functions = [self.observe, self.click, self.double_click, self.right_click, self.move, self.drag, self.scroll,
                     self.type_text, self.key, self.wait]
        if self.apps:
            functions.append(self.launch)
        self._functions = {f.__name__: FunctionTool(f) for f in functions}

    # -- the Tool interface ---------------------------------------------------

    def descriptions(self) -> list[ToolDescription]:
        descriptions = [d for function in self._functions.values() for d in function.descriptions()]
        if "launch" in self._functions:
            launch = descriptions[-1]
            descriptions[-1] = ToolDescription.new(launch.name, f"{launch.description} Allowed: {', '.join(sorted(self.apps))}.",
                                                   parameters=launch.parameters)
        return descriptions

    def recipients(self) -> list[str]:
        return [f"{FUNCTIONS_NAMESPACE}.{name}" for name in self._functions]

    async def start(self) -> str | None:
        await asyncio.to_thread(self._ensure_display)
        return f"computer tool: display {self.display.display} ({self.display.width}x{self.display.height})"

    async def run(self, call: ToolCall) -> ToolResult:
        function = self._functions.get(call.name)
        if function is None:
            raise ToolError(f"the computer tool has no function {call.name!r}")
        try:
            return await function.run(call)
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

    def _gui(self) -> Any:
        """pyautogui bound to our display (imported lazily: it needs DISPLAY and XAUTHORITY at import)."""
        self._ensure_display()
        bind_process_to(self.display)
        if self._pyautogui is None:
            import pyautogui
            from pyautogui import _pyautogui_x11 as x11
            from Xlib.display import Display

            # pyautogui opened DISPLAY once, at import; give it a fresh connection to this tool's display
            # (a display number can be reused by a new server after an old one stopped).
            x11._display = Display(self.display.display)
            pyautogui.FAILSAFE = False  # the corner fail-safe is for a human's screen; bounds are checked here
            pyautogui.PAUSE = 0
            self._pyautogui = pyautogui
        return self._pyautogui

    def _point(self, x: int | None, y: int | None, text: str | None) -> tuple[int, int]:
        if text:
            return self._find_text(text)
        if x is None or y is None:
            raise ToolError("give either x and y, or the text to click on")
        if not (0 <= x < self.display.width and 0 <= y < self.display.height):
            raise ToolError(f"({x}, {y}) is outside the screen, which is {self.display.width}x{self.display.height}; "
                            "nothing was done")
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
                nodes = self._last_nodes = self._accessible(None)
            named = [n for n in nodes if n.name.casefold() == wanted] or [n for n in nodes if wanted in n.name.casefold()]
            if named:
                return named[0].center
        for lines in (self._last_lines, None):
            if lines is None:  # not seen since the last action: read the screen again
                lines = self._last_lines = self.screen.read_text()
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

    def observe(self, region: Literal["focused", "screen"] = "focused") -> str:
        """Describe the screen as text: the windows with their positions, and the text visible in the focused window
        (or the whole screen) by OCR, each line with the point to click it.

        Args:
            region: "focused" to read the focused window (faster), or "screen" to read everything.
        """
        with self._lock:
            self._ensure_display()
            windows = self.screen.windows()
            focused = next((w for w in windows if w.focused), None)
            if region == "focused" and focused is not None:
                area = (focused.x, focused.y, focused.width, focused.height)
                where = f'the focused window "{focused.title}"'
            else:
                area, where = None, "the whole screen"
            self._last_nodes = self._accessible(focused.title if area is not None and focused is not None else None)
            self._last_lines = self.screen.read_text(area)
        out = [f"Screen {self.display.width}x{self.display.height}."]
        if windows:
            out.append("Windows:")
            out += [f'- "{w.title}" at ({w.x}, {w.y}), {w.width}x{w.height}{" [focused]" if w.focused else ""}' for w in windows]
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
        return "\n".join(out)

    def click(self, x: int | None = None, y: int | None = None, text: str | None = None,
              button: Literal["left", "right", "middle"] = "left") -> ToolResult:
        """Click at a point, or on a line of text seen by observe.

        Args:
            x: Horizontal position in pixels from the left.
            y: Vertical position in pixels from the top.
            text: Visible text to click on instead of coordinates.
            button: Which mouse button.
        """
        return self._click(x, y, text, button, 1)

    def double_click(self, x: int | None = None, y: int | None = None, text: str | None = None) -> ToolResult:
        """Double-click at a point, or on a line of text seen by observe.

        Args:
            x: Horizontal position in pixels.
            y: Vertical position in pixels.
            text: Visible text to double-click on instead of coordinates.
        """
        return self._click(x, y, text, "left", 2)

    def right_click(self, x: int | None = None, y: int | None = None, text: str | None = None) -> ToolResult:
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
            gui.moveTo(*point)
            # Like a hand on a mouse: the pointer arrives, then each press lasts a moment. Instant
            # press-release pairs were sometimes lost by GTK check buttons.
            time.sleep(0.02)
            for index in range(clicks):
                gui.mouseDown(button=button)
                time.sleep(0.02)
                gui.mouseUp(button=button)
                if index + 1 < clicks:
                    time.sleep(0.05)
            what = {1: "clicked", 2: "double-clicked"}[clicks] if button != "right" else "right-clicked"
            return self._after_action(f"{what} at ({point[0]}, {point[1]})" + (f' on "{text}"' if text else ""))

    def move(self, x: int, y: int) -> ToolResult:
        """Move the pointer to a point (to hover).

        Args:
            x: Horizontal position in pixels.
            y: Vertical position in pixels.
        """
        with self._lock:
            point = self._point(x, y, None)
            self._gui().moveTo(*point)
            return self._after_action(f"moved the pointer to ({point[0]}, {point[1]})")

    def drag(self, from_x: int, from_y: int, to_x: int, to_y: int) -> ToolResult:
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
            gui.moveTo(*start)
            gui.mouseDown()
            gui.moveTo(*end, duration=0.2)
            gui.mouseUp()
            return self._after_action(f"dragged from {start} to {end}")

    def scroll(self, direction: Literal["up", "down"] = "down", amount: int = 3, x: int | None = None,
               y: int | None = None) -> ToolResult:
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
                gui.moveTo(*self._point(x, y, None))
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
            self._ensure_display()
            bind_process_to(self.display)
            try:
                type_text(self.display.display, text)
            except Exception as exc:
                raise ToolError(f"typing failed: {exc}") from None
            return self._after_action(f"typed {len(text)} characters")

    def key(self, keys: str) -> ToolResult:
        """Press a key or a chord, like "enter", "tab", "esc", "ctrl+a", "ctrl+shift+t" or "alt+f4".

        Args:
            keys: Key names joined by "+".
        """
        names = [KEY_ALIASES.get(part.strip().lower(), part.strip().lower()) for part in keys.split("+") if part.strip()]
        if not names:
            raise ToolError("no key given")
        with self._lock:
            gui = self._gui()
            unknown = [name for name in names if name not in gui.KEYBOARD_KEYS]
            if unknown:
                raise ToolError(f"unknown key {unknown[0]!r}; use names like enter, tab, esc, ctrl, shift, alt, f5, a")
            gui.hotkey(*names)
            return self._after_action(f"pressed {'+'.join(names)}")

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
