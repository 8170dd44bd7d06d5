"""The agent's own X connection to one display, in a process of its own that holds that display's cookie.

Each display's X server admits only clients that show its cookie; nothing is
let in by user. python-xlib and mss read the cookie only from ``XAUTHORITY``
in the environment, and the agent must not change its own; so everything the
agent itself does on a display over X (screen grabs, XTest pointer and
keyboard input, reading the window tree) runs here, in a worker started by
``VirtualDisplay.start_client`` with ``DISPLAY`` and ``XAUTHORITY`` for that
display and nothing else of the agent's environment. ``xclient.DisplayClient``
is the agent's side.

Run as ``python -I x_worker.py DISPLAY``; it imports only the standard
library, python-xlib and mss (not harmony_agent, which takes seconds to
import). Protocol on stdin/stdout, each message a 4-byte big-endian length
then its bytes: a JSON request ``{"op": NAME, "args": [...]}``; the answer a
JSON ``{"ok": VALUE}`` or ``{"error": TEXT}``, and after a grab's answer a
message of BGRX pixels. The first answer, unasked, says whether the display
let the worker in. The process ends when stdin closes (as it does when the
agent dies).

Input: each tool owns one worker, so two tools in one process each drive
their own display (pyautogui keeps a single connection for the whole
process, so an action meant for one display landed on another).

Text is typed keysym by keysym: a character on the keyboard map is pressed
with its own keycode (and Shift for the second level); any other is bound,
on both levels, to one of a few spare keycodes, pressed, and left there.
``xdotool type`` lost or lower-cased upper-case letters outside ASCII
(``Ø`` came out as ``ø``). The short pauses let the application see a new
mapping before the key event.
"""

from __future__ import annotations

import json
import struct
import sys
import time
from typing import Any, BinaryIO

REMAP_PAUSE = 0.02
SPARE_KEYCODES = 8
BUTTONS = {"left": 1, "middle": 2, "right": 3}
#: Key names the model may use, to X keysym names; single characters map to their own keysym.
KEY_NAMES = {
    "enter": "Return",
    "return": "Return",
    "tab": "Tab",
    "esc": "Escape",
    "escape": "Escape",
    "space": "space",
    "backspace": "BackSpace",
    "delete": "Delete",
    "del": "Delete",
    "insert": "Insert",
    "home": "Home",
    "end": "End",
    "pageup": "Prior",
    "page_up": "Prior",
    "pagedown": "Next",
    "page_down": "Next",
    "up": "Up",
    "down": "Down",
    "left": "Left",
    "right": "Right",
    "arrowup": "Up",
    "arrowdown": "Down",
    "arrowleft": "Left",
    "arrowright": "Right",
    "ctrl": "Control_L",
    "control": "Control_L",
    "shift": "Shift_L",
    "alt": "Alt_L",
    "super": "Super_L",
    "win": "Super_L",
    "cmd": "Super_L",
    "menu": "Menu",
    "capslock": "Caps_Lock",
    "printscreen": "Print",
    "pause": "Pause",
    **{f"f{n}": f"F{n}" for n in range(1, 25)},
}


def keysym_for(character: str) -> int:
    """The X keysym of one character (Latin-1 keysyms equal their code points; others use X's Unicode keysyms)."""
    from Xlib import XK

    if character == "\n":
        return XK.string_to_keysym("Return")
    if character == "\t":
        return XK.string_to_keysym("Tab")
    code = ord(character)
    if 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xFF:
        return code
    return 0x01000000 | code


def key_symbols(keys: str) -> list[int]:
    """Keysyms of a chord like "ctrl+shift+t"; raises ValueError naming the first unknown key."""
    from Xlib import XK

    names = [part.strip() for part in keys.split("+") if part.strip()] if keys.strip() != "+" else ["+"]
    if not names:
        raise ValueError("no key given")
    symbols = []
    for name in names:
        if len(name) == 1:
            symbols.append(keysym_for(name.lower() if name.isalpha() else name))
            continue
        symbol = XK.string_to_keysym(KEY_NAMES.get(name.lower(), name))
        if not symbol:
            raise ValueError(f"unknown key {name.lower()!r}; use names like enter, tab, esc, ctrl, shift, alt, f5, a")
        symbols.append(symbol)
    return symbols


class XSession:
    """One X connection to one display: fake pointer and keyboard events, pixels, the window tree."""

    def __init__(self, display_name: str) -> None:
        from Xlib.display import Display

        self.display_name = display_name
        self.display: Any = Display(display_name)  # the cookie comes from XAUTHORITY, this process's own
        if not self.display.has_extension("XTEST"):
            raise RuntimeError(f"display {display_name} has no XTEST extension")
        self._grabber: Any = None

    def _fake(self, event_type: int, detail: int = 0, **position: int) -> None:
        from Xlib.ext import xtest

        xtest.fake_input(self.display, event_type, detail, **position)

    def pointer(self) -> tuple[int, int]:
        """Where the pointer is now, as this display's server says."""
        reply = self.display.screen().root.query_pointer()
        return reply.root_x, reply.root_y

    def move(self, x: int, y: int) -> None:
        from Xlib import X

        self._fake(X.MotionNotify, x=x, y=y)
        self.display.sync()

    def glide(self, x: int, y: int, seconds: float = 0.2, steps: int = 10) -> None:
        """Move in small steps, so a drag is seen as one by toolkits that want intermediate motion."""
        start_x, start_y = self.pointer()
        for step in range(1, steps + 1):
            self.move(round(start_x + (x - start_x) * step / steps), round(start_y + (y - start_y) * step / steps))
            time.sleep(seconds / steps)

    def button(self, button: str | int, down: bool) -> None:
        from Xlib import X

        number = BUTTONS[button] if isinstance(button, str) else button
        self._fake(X.ButtonPress if down else X.ButtonRelease, number)
        self.display.sync()

    def click(self, button: str = "left", clicks: int = 1, hold: float = 0.02, between: float = 0.05) -> None:
        """Each press lasts a moment, like a hand on a mouse: instant pairs were sometimes lost by GTK check buttons."""
        for index in range(clicks):
            self.button(button, True)
            time.sleep(hold)
            self.button(button, False)
            if index + 1 < clicks:
                time.sleep(between)

    def scroll(self, steps: int) -> None:
        """Positive steps scroll up (wheel button 4), negative down (button 5)."""
        for _ in range(abs(steps)):
            self.button(4 if steps > 0 else 5, True)
            self.button(4 if steps > 0 else 5, False)

    def chord(self, symbols: list[int]) -> None:
        """Press keys in order and release them in reverse (a hotkey)."""
        from Xlib import X

        codes = [self._keycode(symbol) for symbol in symbols]
        for code, shifted in codes:
            if shifted:
                self._fake(X.KeyPress, self._shift())
            self._fake(X.KeyPress, code)
        for code, shifted in reversed(codes):
            self._fake(X.KeyRelease, code)
            if shifted:
                self._fake(X.KeyRelease, self._shift())
        self.display.sync()

    def _shift(self) -> int:
        from Xlib import XK

        return self.display.keysym_to_keycode(XK.string_to_keysym("Shift_L"))

    def _keycode(self, symbol: int) -> tuple[int, bool]:
        """A keycode for a keysym on the current map, binding a spare keycode when no key carries it."""
        found = [(code, level) for code, level in self.display.keysym_to_keycodes(symbol) if level in (0, 1)]
        if found:
            return found[0][0], found[0][1] == 1
        code = self._spare_keycodes()[0]
        self.display.change_keyboard_mapping(code, [(symbol, symbol)])
        self.display.sync()
        time.sleep(REMAP_PAUSE)
        return code, False

    def _spare_keycodes(self) -> list[int]:
        first = self.display.display.info.min_keycode
        count = self.display.display.info.max_keycode - first + 1
        mapping = self.display.get_keyboard_mapping(first, count)
        spare = [first + index for index, symbols in enumerate(mapping) if not any(symbols)][-SPARE_KEYCODES:]
        if not spare:
            raise RuntimeError("the keyboard map has no spare keycode to type non-keyboard characters with")
        return spare

    def type_text(self, text: str) -> None:
        """Type ``text`` into whatever has the keyboard focus."""
        from Xlib import X

        display = self.display
        spare: list[int] = []
        remapped = 0
        for character in text:
            symbol = keysym_for(character)
            found = [(code, level) for code, level in display.keysym_to_keycodes(symbol) if level in (0, 1)]
            if found:
                code, level = found[0]
                if level == 1:
                    self._fake(X.KeyPress, self._shift())
                self._fake(X.KeyPress, code)
                self._fake(X.KeyRelease, code)
                if level == 1:
                    self._fake(X.KeyRelease, self._shift())
                display.sync()
                continue
            spare = spare or self._spare_keycodes()
            code = spare[remapped % len(spare)]
            remapped += 1
            display.change_keyboard_mapping(code, [(symbol, symbol)])
            display.sync()
            time.sleep(REMAP_PAUSE)
            self._fake(X.KeyPress, code)
            self._fake(X.KeyRelease, code)
            display.sync()
            time.sleep(REMAP_PAUSE)

    def grab(self, left: int, top: int, width: int, height: int) -> tuple[list[int], bytes]:
        """The pixels of a rectangle of the screen: its size, and BGRX bytes."""
        import mss

        if self._grabber is None:
            self._grabber = mss.MSS(display=self.display_name)
        shot = self._grabber.grab({"left": left, "top": top, "width": width, "height": height})
        return [shot.width, shot.height], bytes(shot.bgra)

    def leaves(self, window_id: int, limit: int = 1000) -> dict[str, Any]:
        """The window's size and its viewable leaf windows' boxes in screen coordinates (``elements.py`` judges
        which are elements without text); no leaves for a window drawn as one surface, or one that is gone."""
        from Xlib import X
        from Xlib.error import XError

        root = self.display.screen().root
        top = self.display.create_resource_object("window", window_id)
        try:
            top_geometry = top.get_geometry()
        except XError:
            return {"size": None, "boxes": []}
        boxes: list[list[int]] = []
        stack = [top]
        while stack and len(boxes) < limit:
            window = stack.pop()
            try:
                children = [c for c in window.query_tree().children if c.get_attributes().map_state == X.IsViewable]
            except XError:
                continue  # gone while we looked
            if children:
                stack.extend(children)
                continue
            if window.id == top.id:
                continue  # a window without children: one surface, nothing to tell apart here
            try:
                geometry = window.get_geometry()
                origin = window.translate_coords(root, 0, 0)
            except XError:
                continue
            boxes.append([-origin.x, -origin.y, geometry.width, geometry.height])
        return {"size": [top_geometry.width, top_geometry.height], "boxes": boxes}

    def close(self) -> None:
        for resource in (self._grabber, self.display):
            try:
                resource.close() if resource is not None else None
            except Exception:
                pass
        self._grabber = None


#: What a request may ask of the session, by name.
OPERATIONS = ("pointer", "move", "glide", "button", "click", "scroll", "chord", "type_text", "grab", "leaves")


def read_message(stream: BinaryIO) -> bytes | None:
    """One length-prefixed message, or None when the stream ended."""
    header = stream.read(4)
    if len(header) < 4:
        return None
    (length,) = struct.unpack(">I", header)
    data = stream.read(length)
    return data if len(data) == length else None


def write_message(stream: BinaryIO, *messages: bytes) -> None:
    """Length-prefixed messages, written without joining them (a screen's pixels are megabytes)."""
    for message in messages:
        stream.write(struct.pack(">I", len(message)))
        stream.write(message)
    stream.flush()


def serve(display_name: str, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Connect to the display, say whether that worked, then answer requests until stdin closes."""
    try:
        session = XSession(display_name)
    except Exception as exc:
        write_message(stdout, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
        return
    write_message(stdout, json.dumps({"ok": display_name}).encode())
    from Xlib.error import ConnectionClosedError

    try:
        while (request := read_message(stdin)) is not None:
            pixels: list[bytes] = []
            try:
                message = json.loads(request)
                if message.get("op") not in OPERATIONS:
                    raise ValueError(f"no operation {message.get('op')!r}")
                answer: Any = getattr(session, message["op"])(*message.get("args", []))
                if message["op"] == "grab":
                    answer, data = answer
                    pixels.append(data)
                reply = {"ok": answer}
            except Exception as exc:  # answer, and keep serving
                reply = {"error": f"{type(exc).__name__}: {exc}"}
                if isinstance(exc, ConnectionClosedError):
                    write_message(stdout, json.dumps(reply).encode())
                    return  # the display is gone: so is this worker
            write_message(stdout, json.dumps(reply).encode(), *pixels)
    finally:
        session.close()


if __name__ == "__main__":
    serve(sys.argv[1], sys.stdin.buffer, sys.stdout.buffer)
