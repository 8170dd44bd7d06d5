"""Pointer and keyboard input on one display, through the XTest extension on a connection of our own.

Each ComputerTool owns one of these, so two tools in one process each drive
their own display (pyautogui keeps a single connection for the whole
process, so an action meant for one display landed on another). Nothing
here reads or writes the process environment: the connection names its
display explicitly and is let in by the display's server-interpreted
access rule for this user (see ``VirtualDisplay``).

Text is typed keysym by keysym: a character on the keyboard map is pressed
with its own keycode (and Shift for the second level); any other is bound,
on both levels, to one of a few spare keycodes, pressed, and left there.
``xdotool type`` lost or lower-cased upper-case letters outside ASCII
(``Ø`` came out as ``ø``). The short pauses let the application see a new
mapping before the key event.
"""

from __future__ import annotations

import threading
import time
from typing import Any

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


class XInput:
    """One X connection to one display, for fake pointer and keyboard events. Thread-safe; close() when done."""

    def __init__(self, display_name: str) -> None:
        self.display_name = display_name
        self._display: Any = None
        self._lock = threading.Lock()

    def _connection(self) -> Any:
        if self._display is None:
            from Xlib.display import Display

            self._display = Display(self.display_name)
            if not self._display.has_extension("XTEST"):
                self.close()
                raise RuntimeError(f"display {self.display_name} has no XTEST extension")
        return self._display

    def _fake(self, event_type: int, detail: int = 0, **position: int) -> None:
        from Xlib.ext import xtest

        xtest.fake_input(self._connection(), event_type, detail, **position)

    def pointer(self) -> tuple[int, int]:
        """Where the pointer is now, as this display's server says."""
        with self._lock:
            reply = self._connection().screen().root.query_pointer()
            return reply.root_x, reply.root_y

    def move(self, x: int, y: int) -> None:
        from Xlib import X

        with self._lock:
            self._fake(X.MotionNotify, x=x, y=y)
            self._connection().sync()

    def glide(self, x: int, y: int, seconds: float = 0.2, steps: int = 10) -> None:
        """Move in small steps, so a drag is seen as one by toolkits that want intermediate motion."""
        start_x, start_y = self.pointer()
        for step in range(1, steps + 1):
            self.move(round(start_x + (x - start_x) * step / steps), round(start_y + (y - start_y) * step / steps))
            time.sleep(seconds / steps)

    def button(self, button: str | int, down: bool) -> None:
        from Xlib import X

        number = BUTTONS[button] if isinstance(button, str) else button
        with self._lock:
            self._fake(X.ButtonPress if down else X.ButtonRelease, number)
            self._connection().sync()

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

        with self._lock:
            display = self._connection()
            codes = [self._keycode(symbol) for symbol in symbols]
            for code, shifted in codes:
                if shifted:
                    self._fake(X.KeyPress, self._shift())
                self._fake(X.KeyPress, code)
            for code, shifted in reversed(codes):
                self._fake(X.KeyRelease, code)
                if shifted:
                    self._fake(X.KeyRelease, self._shift())
            display.sync()

    def _shift(self) -> int:
        from Xlib import XK

        return self._connection().keysym_to_keycode(XK.string_to_keysym("Shift_L"))

    def _keycode(self, symbol: int) -> tuple[int, bool]:
        """A keycode for a keysym on the current map, binding a spare keycode when no key carries it."""
        display = self._connection()
        found = [(code, level) for code, level in display.keysym_to_keycodes(symbol) if level in (0, 1)]
        if found:
            return found[0][0], found[0][1] == 1
        code = self._spare_keycodes()[0]
        display.change_keyboard_mapping(code, [(symbol, symbol)])
        display.sync()
        time.sleep(REMAP_PAUSE)
        return code, False

    def _spare_keycodes(self) -> list[int]:
        display = self._connection()
        first = display.display.info.min_keycode
        count = display.display.info.max_keycode - first + 1
        mapping = display.get_keyboard_mapping(first, count)
        spare = [first + index for index, symbols in enumerate(mapping) if not any(symbols)][-SPARE_KEYCODES:]
        if not spare:
            raise RuntimeError("the keyboard map has no spare keycode to type non-keyboard characters with")
        return spare

    def type_text(self, text: str) -> None:
        """Type ``text`` into whatever has the keyboard focus."""
        from Xlib import X

        with self._lock:
            display = self._connection()
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

    def close(self) -> None:
        if self._display is not None:
            try:
                self._display.close()
            except Exception:
                pass
            self._display = None
