"""How the browser's actions act on a page: as a person with a mouse and keyboard would, with errors that say why.

- A click goes to a point of the element a person can see: its centre, or
  when something covers that, another visible point of it. It is refused,
  naming the cover, only when no part of the element can be seen.
- ``type`` sends real key events (pages that listen for keys, like a
  terminal, see them), and gives date and time fields their machine form.
- ``select`` chooses several options in a list that allows it.
- ``press`` takes a sequence of keys in one call.
"""

from __future__ import annotations

import re
from typing import Any

from harmony_agent.tools.base import ToolError
from harmony_agent.tools.browser.forms import FORMS, field_value, key_sequence

# Whether a person could click the element, and where: null (its centre), {x, y} (a visible point of it, from its
# top-left corner, when its centre is covered), or why not (hidden, no size, or covered everywhere, naming the cover).
HIT_TEST = r"""(el) => {
  if (el.checkVisibility && !el.checkVisibility({ checkVisibilityCSS: true })) return "it is not visible now (hidden or collapsed)";
  let r = el.getBoundingClientRect();
  if (r.bottom < 0 || r.right < 0 || r.top > innerHeight || r.left > innerWidth) {
    el.scrollIntoView({ block: "center", inline: "center" });
    r = el.getBoundingClientRect();
  }
  if (!r.width || !r.height) return "it has no size on the screen (hidden or empty)";
  const reaches = (hit) => !!hit && (el.contains(hit) || hit.contains(el) || (hit.control && hit.control === el));
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  if (reaches(hit)) return null;
  // The middle of the longest visible stretch of a row (rows near the centre first): away from the cover's edge.
  const steps = [0.5, 0.35, 0.65, 0.2, 0.8, 0.08, 0.92];
  let best = null;
  for (const fy of steps) {
    const y = r.top + r.height * fy;
    let run = [];
    const consider = () => {
      if (run.length && (!best || run.length > best.length)) best = { length: run.length, x: run[run.length >> 1], y };
      run = [];
    };
    for (let i = 1; i < 20; i++) {
      const x = r.left + (r.width * i) / 20;
      if (x >= 0 && y >= 0 && x < innerWidth && y < innerHeight && reaches(document.elementFromPoint(x, y))) run.push(x);
      else consider();
    }
    consider();
  }
  // Playwright's click position counts from the padding box's corner: take the border off.
  if (best) return { x: best.x - r.left - el.clientLeft, y: best.y - r.top - el.clientTop };
  if (!hit) return "it is outside the window";
  const cover = hit.closest("[data-harmony-id]") || hit;
  const id = cover.getAttribute("data-harmony-id");
  const text = (cover.innerText || "").replace(/\s+/g, " ").trim().slice(0, 60);
  const name = cover.tagName.toLowerCase() + (cover.id ? "#" + cover.id : "") +
    (typeof cover.className === "string" && cover.className.trim() ? "." + cover.className.trim().split(/\s+/).join(".") : "");
  return `it is covered by ${id !== null ? `【${id}†${text}】 ` : ""}<${name}>${text && id === null ? ` "${text}"` : ""}`;
}"""
# The options of a select that match each wanted label or value (exact label, exact value, then ignoring case).
SELECT_MATCH = r"""(el, wanted) => {
  if (el.tagName !== "SELECT") return { error: "it is not a select list" };
  const clean = (s) => (s || "").replace(/\s+/g, " ").trim();
  const options = Array.from(el.options);
  const labels = options.map((o) => clean(o.label || o.text));
  const found = [], missing = [];
  for (const want of wanted) {
    const w = clean(want);
    let i = labels.indexOf(w);
    if (i < 0) i = options.findIndex((o) => o.value === want);
    if (i < 0) i = labels.findIndex((l) => l.toLowerCase() === w.toLowerCase());
    if (i < 0) missing.push(want); else found.push(i);
  }
  const chosen = options.map((o, i) => (o.selected ? i : -1)).filter((i) => i >= 0);
  return { found, missing, labels, multiple: el.multiple, chosen };
}"""
# What kind of field an element is: [tag, input type, editable as rich text, holds text now].
FIELD_KIND = (
    "(el) => [el.tagName, (el.getAttribute('type') || '').toLowerCase(), el.isContentEditable,"
    " !!(typeof el.value === 'string' ? el.value : el.isContentEditable ? el.textContent : '')]"
)
# Whether the keyboard's keys would reach the element (a disabled field cannot take the focus, and its keys
# would go to whatever had it).
HAS_FOCUS = "(el) => el === document.activeElement || el.contains(document.activeElement)"
#: Input types typed key by key; the others (range, color, date...) take their value directly.
KEYED_TYPES = {"", "text", "search", "email", "password", "number", "url", "tel"}
#: Longer text is filled in at once (key by key would take seconds), without key events.
KEYED_MAX_CHARS = 1000
_REPEAT = re.compile(r"^(.+)\*(\d+)$")
MAX_REPEAT = 100


async def find_target(page: Any, element_id: int) -> Any:
    target = await page.query_selector(f'[data-harmony-id="{int(element_id)}"]')
    if target is None:
        raise ToolError(f"element {element_id} is no longer on the page; read the page again (open with no id)")
    return target


async def reachable(page: Any, element_id: int) -> tuple[Any, dict[str, float] | None]:
    """The element, scrolled into view, and the point to click it at (None: its centre), if a person could click
    it; otherwise a ToolError that says why, at once. Two round trips: this runs before every click."""
    target = await find_target(page, element_id)
    verdict = await target.evaluate(HIT_TEST)
    if isinstance(verdict, str):
        raise ToolError(f"cannot click element {element_id}: {verdict}; close, answer or scroll past it first")
    return target, verdict


async def type_text(page: Any, element_id: int, text: str, submit: bool, timeout: float) -> None:
    """Type ``text`` into the field as keys (after clearing it); a date or time field gets its machine form."""
    target = await find_target(page, element_id)
    tag, kind, rich, filled = await target.evaluate(FIELD_KIND)
    if tag == "INPUT" and kind in FORMS:
        value = field_value(kind, text)
        await target.fill(value, timeout=timeout)
        shown = await target.input_value(timeout=timeout)
        if shown != value:
            raise ToolError(f"this {kind} field did not take {text!r} (it shows {shown!r}): write it as {FORMS[kind]}")
    elif (tag == "INPUT" and kind in KEYED_TYPES) or tag == "TEXTAREA" or rich:
        if filled:  # select all and delete, as a person would (a key listener sees a Delete)
            await target.fill("", timeout=timeout)
        await target.focus()
        if len(text) <= KEYED_MAX_CHARS and await target.evaluate(HAS_FOCUS):
            await page.keyboard.type(text)
        else:  # too long to type key by key, or it cannot take the focus (disabled): fill says why if it fails
            await target.fill(text, timeout=timeout)
    else:
        await target.fill(text, timeout=timeout)
    if submit:
        await target.press("Enter", timeout=timeout)


async def select_options(page: Any, element_id: int, wanted: list[str], add: bool, timeout: float) -> None:
    """Choose ``wanted`` in select ``element_id``. In a list that allows several, one option (``add``) joins
    those already chosen, and a list of them replaces them; otherwise exactly one option is chosen."""
    target = await find_target(page, element_id)
    match = await target.evaluate(SELECT_MATCH, wanted)
    if "error" in match:
        raise ToolError(f"cannot select in element {element_id}: {match['error']}")
    if match["missing"]:
        listed = " | ".join(match["labels"][:40]) + (" …" if len(match["labels"]) > 40 else "")
        raise ToolError(f"select {element_id} has no option {match['missing'][0]!r}; its options are: {listed}")
    if not match["multiple"] and len(wanted) > 1:
        raise ToolError(f"select {element_id} takes one option, not {len(wanted)}")
    indices = match["found"]
    if match["multiple"] and add:
        indices = sorted(set(match["chosen"]) | set(indices))
    await target.select_option(index=indices, timeout=timeout)


async def press_keys(page: Any, keys: str, element_id: int | None) -> None:
    """Press each key of the sequence in turn (``Key*N`` presses it N times), on ``element_id`` if given
    (focused first), else on whatever has the focus."""
    sequence: list[str] = []
    for key in key_sequence(keys):
        repeat = _REPEAT.match(key)
        count = int(repeat.group(2)) if repeat else 1
        if not 1 <= count <= MAX_REPEAT:
            raise ToolError(f"press repeats a key 1 to {MAX_REPEAT} times, not {count}")
        sequence += [repeat.group(1) if repeat else key] * count
    if element_id is not None:
        target = await find_target(page, element_id)
        await target.focus()
        if not await target.evaluate(HAS_FOCUS):
            raise ToolError(f"element {element_id} cannot take the keyboard focus (it may be disabled or hidden)")
    for key in sequence:
        try:
            await page.keyboard.press(key)
        except Exception as exc:
            if "Unknown key" in str(exc):
                raise ToolError(
                    f"press: unknown key {key!r} (keys are named like Enter, Tab, ArrowDown, a, Shift+A, Control+A; "
                    "separate several with spaces)"
                ) from None
            raise
