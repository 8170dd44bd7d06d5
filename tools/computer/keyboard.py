"""Typing any text through the XTest extension, one keysym at a time.

pyautogui's ``write`` silently drops characters outside ASCII, and ``xdotool
type`` loses or lower-cases upper-case letters outside ASCII (``Ø`` came out
as ``ø`` or not at all here). So: a character on the keyboard map is pressed
with its own keycode (and Shift for the second level); any other is bound,
on both levels, to one of a few spare keycodes, pressed, and left there. The
short pauses let the application see the new mapping before the key event.
"""

from __future__ import annotations

import time

REMAP_PAUSE = 0.02
SPARE_KEYCODES = 8


def keysym_for(character: str) -> int:
    from Xlib import XK

    if character == "\n":
        return XK.string_to_keysym("Return")
    if character == "\t":
        return XK.string_to_keysym("Tab")
    code = ord(character)
    if 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xFF:
        return code  # Latin-1 keysyms equal their code points
    return 0x01000000 | code  # X's Unicode keysyms


def type_text(display_name: str, text: str) -> None:
    """Type ``text`` into whatever has the keyboard focus on ``display_name``."""
    from Xlib import X, XK
    from Xlib.display import Display
    from Xlib.ext import xtest

    display = Display(display_name)
    try:
        first = display.display.info.min_keycode
        count = display.display.info.max_keycode - first + 1
        mapping = display.get_keyboard_mapping(first, count)
        spare = [first + index for index, symbols in enumerate(mapping) if not any(symbols)][-SPARE_KEYCODES:]
        shift = display.keysym_to_keycode(XK.string_to_keysym("Shift_L"))
        remapped = 0
        for character in text:
            symbol = keysym_for(character)
            found = [(code, level) for code, level in display.keysym_to_keycodes(symbol) if level in (0, 1)]
            if found:
                code, level = found[0]
                if level == 1:
                    xtest.fake_input(display, X.KeyPress, shift)
                xtest.fake_input(display, X.KeyPress, code)
                xtest.fake_input(display, X.KeyRelease, code)
                if level == 1:
                    xtest.fake_input(display, X.KeyRelease, shift)
                display.sync()
                continue
            if not spare:
                raise RuntimeError("the keyboard map has no spare keycode to type non-keyboard characters with")
            code = spare[remapped % len(spare)]
            remapped += 1
            display.change_keyboard_mapping(code, [(symbol, symbol)])
            display.sync()
            time.sleep(REMAP_PAUSE)
            xtest.fake_input(display, X.KeyPress, code)
            xtest.fake_input(display, X.KeyRelease, code)
            display.sync()
            time.sleep(REMAP_PAUSE)
    finally:
        display.close()
