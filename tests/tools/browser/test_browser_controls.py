"""The controls a text view once missed, on local pages in real Chromium: each page reproduces one failure.

Multi-select lists (a second choice replaced the first), date and time inputs (``10/11/2011`` left the field
empty without a word), key-driven widgets (``type`` sent no key events), icon-only controls (a spinner's two
arrows looked alike), keyboard focus (not shown), and partly covered buttons (refused though part was visible).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harmony_agent.tools.base import ToolError
from harmony_agent.tools.browser import BrowserTool, NavigationPolicy
from harmony_agent.tools.browser.forms import field_value, key_sequence
from helpers.available import require
from helpers.pages import call, marker, serve_pages

LOG = "<p id='log'>nothing</p><script>const log = (t) => { document.getElementById('log').textContent = t; };</script>"
PAGES = {
    "/multi": """<!doctype html><title>Multi</title><body>%LOG%
<label for="c">Countries</label> <select id="c" multiple size="4">
<option>Nicaragua</option><option>Niger</option><option value="no">Norway</option><option>Peru</option></select>
<button onclick="log('chose ' + Array.from(document.getElementById('c').selectedOptions).map(o => o.text).join(','))">
Submit</button></body>""",
    "/dates": """<!doctype html><title>Dates</title><body>%LOG%
<input type="date" id="d" aria-label="Departure"> <input type="time" id="t" aria-label="Alarm">
<input type="datetime-local" id="dt" aria-label="Meeting"> <input type="month" id="m" aria-label="Billing month">
<script>for (const id of ['d', 't', 'dt', 'm']) document.getElementById(id).addEventListener('change',
  (e) => log(id + '=' + e.target.value));</script></body>""",
    "/keys": """<!doctype html><title>Keys</title><body>%LOG%
<input id="k" aria-label="Command" autocomplete="off"> <input id="off" aria-label="Locked" disabled>
<script>const keys = []; document.getElementById('k').addEventListener('keydown', (e) => {
  keys.push(e.key); log('keys: ' + keys.join(' ')); if (e.key !== 'Enter') e.preventDefault(); });</script></body>""",
    "/icons": """<!doctype html><title>Icons</title><body>%LOG%
<span class="ui-spinner ui-widget"><input id="s" aria-label="Amount" value="0">
<a class="ui-spinner-button ui-spinner-up ui-corner-tr" style="display:block;width:16px;height:10px;cursor:pointer">
<span class="ui-icon ui-icon-triangle-1-n"></span></a>
<a class="ui-spinner-button ui-spinner-down ui-corner-br" style="display:block;width:16px;height:10px;cursor:pointer">
<span class="ui-icon ui-icon-triangle-1-s"></span></a></span>
<div class="stepper"><span class="knob" style="display:block;width:12px;height:12px"></span>
<span class="knob" style="display:block;width:12px;height:12px"></span></div>
<script>
const s = document.getElementById('s');
document.querySelector('.ui-spinner-up').addEventListener('click', () => { s.value = +s.value + 1; log('amount ' + s.value); });
document.querySelector('.ui-spinner-down').addEventListener('click', () => { s.value = +s.value - 1; log('amount ' + s.value); });
document.querySelectorAll('.knob').forEach((k, i) => k.addEventListener('click', () => log('knob ' + i)));
</script></body>""",
    "/focus": """<!doctype html><title>Focus</title><body>%LOG%
<input id="a" aria-label="Name"> <button id="b">Go</button> <select id="c" aria-label="Size"><option>S</option></select>
<script>document.getElementById('b').focus();</script></body>""",
    "/partial": """<!doctype html><title>Partial</title><body>%LOG%
<button id="one" style="position:absolute;left:20px;top:60px;width:120px;height:40px" onclick="log('clicked ONE')">ONE
</button>
<button id="two" style="position:absolute;left:70px;top:50px;width:120px;height:60px" onclick="log('clicked TWO')">TWO
</button>
<button id="three" style="position:absolute;left:20px;top:160px;width:60px;height:30px" onclick="log('clicked THREE')">
THREE</button>
<div id="lid" style="position:absolute;left:10px;top:150px;width:100px;height:50px;background:#333">lid</div>
</body>""",
}
PAGES = {path: page.replace("%LOG%", LOG) for path, page in PAGES.items()}


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with serve_pages(PAGES) as base:
        yield base


@pytest.fixture
async def browser():
    require("chromium")
    tool = BrowserTool(policy=NavigationPolicy(allow_domains=["127.0.0.1"], allow_addresses=["127.0.0.1"]))
    yield tool
    await tool.aclose()


async def test_a_multi_select_list_takes_several_options_and_the_view_shows_every_chosen_one(browser, site):
    view = (await call(browser, "open", id=f"{site}/multi")).text()
    select = marker(view, 'select (several) "Countries"')
    await call(browser, "select", id=select, option="Nicaragua")
    both = (await call(browser, "select", id=select, option="Niger")).text()
    assert 'select (several) "Countries" = Nicaragua | Niger;' in both, both
    assert "chose Nicaragua,Niger" in (await call(browser, "click", id=marker(both, "button: Submit"))).text()
    exact = (await call(browser, "select", id=select, options=["no", "Peru"])).text()  # a value and a label
    assert '"Countries" = Norway | Peru;' in exact, exact
    missing = await call(browser, "select", id=select, option="Narnia")
    assert missing.is_error and "no option 'Narnia'" in missing.text() and "Nicaragua | Niger" in missing.text()


@pytest.mark.parametrize(
    "label, typed, stored",
    [
        ('date input "Departure"', "10/11/2011", "d=2011-10-11"),
        ('date input "Departure"', "October 11, 2011", "d=2011-10-11"),
        ('time input "Alarm"', "8:04 PM", "t=20:04"),
        ('time input "Alarm"', "20:04", "t=20:04"),
        ('datetime-local input "Meeting"', "10/11/2011 8:04 PM", "dt=2011-10-11T20:04"),
        ('month input "Billing month"', "October 2011", "m=2011-10"),
    ],
)
async def test_date_and_time_fields_take_what_people_write(browser, site, label, typed, stored):
    view = (await call(browser, "open", id=f"{site}/dates")).text()
    typed_view = await call(browser, "type", id=marker(view, label), text=typed)
    assert not typed_view.is_error and stored in typed_view.text(), typed_view.text()


async def test_a_date_the_field_cannot_take_is_an_error_naming_its_form_never_an_empty_field(browser, site):
    view = (await call(browser, "open", id=f"{site}/dates")).text()
    refused = await call(browser, "type", id=marker(view, 'date input "Departure"'), text="someday soon")
    assert refused.is_error and "YYYY-MM-DD" in refused.text()
    refused = await call(browser, "type", id=marker(view, 'time input "Alarm"'), text="25:99")
    assert refused.is_error and "HH:MM" in refused.text()


async def test_type_sends_key_events_and_press_takes_a_sequence_in_one_call(browser, site):
    view = (await call(browser, "open", id=f"{site}/keys")).text()
    box = marker(view, 'input "Command"')
    typed = (await call(browser, "type", id=box, text="ls", submit=True)).text()
    assert "keys: l s Enter" in typed, typed
    pressed = (await call(browser, "press", key="ArrowDown*2 Shift+A Enter")).text()
    assert "keys: l s Enter ArrowDown ArrowDown Shift A Enter" in pressed, pressed
    locked = await call(browser, "type", id=marker(pressed, 'input "Locked"'), text="rm")
    assert (
        locked.is_error
        and "keys: l s Enter ArrowDown ArrowDown Shift A Enter" in (await call(browser, "open", cursor=-1)).text()
    )  # refused, and no key went to the field that had the focus
    unfocusable = await call(browser, "press", key="Enter", id=marker(pressed, 'input "Locked"'))
    assert unfocusable.is_error and "cannot take the keyboard focus" in unfocusable.text()
    unknown = await call(browser, "press", key="ArrowSideways")
    assert unknown.is_error and "unknown key 'ArrowSideways'" in unknown.text()


async def test_icon_only_controls_are_named_from_their_classes_or_their_position(browser, site):
    view = (await call(browser, "open", id=f"{site}/icons")).text()
    up, down = marker(view, "[spinner-up]"), marker(view, "[spinner-down]")
    assert "amount 1" in (await call(browser, "click", id=up)).text()
    assert "amount 0" in (await call(browser, "click", id=down)).text()
    top, bottom = marker(view, "[knob] (top)"), marker(view, "[knob] (bottom)")
    assert "knob 1" in (await call(browser, "click", id=bottom)).text()
    assert "knob 0" in (await call(browser, "click", id=top)).text()


async def test_the_view_says_which_element_has_keyboard_focus(browser, site):
    view = (await call(browser, "open", id=f"{site}/focus")).text()
    assert "button: Go (focused)" in view and '"Name" = "" (focused)' not in view
    moved = (await call(browser, "press", key="Shift+Tab")).text()
    assert '"Name" = "" (focused)' in moved and "button: Go (focused)" not in moved
    assert "(focused)" in (await call(browser, "press", key="Tab Tab")).text().split('select "Size"')[1]


async def test_a_partly_covered_button_is_clicked_where_it_shows_and_a_hidden_one_is_refused(browser, site):
    view = (await call(browser, "open", id=f"{site}/partial")).text()
    assert "On top of" not in view  # TWO covers ONE's centre only: ONE is not listed as under it
    clicked = await call(browser, "click", id=marker(view, "button: ONE"))
    assert "clicked ONE" in clicked.text(), clicked.text()
    refused = await call(browser, "click", id=marker(view, "button: THREE"))
    assert refused.is_error and "covered by" in refused.text() and "lid" in refused.text()


def test_written_dates_and_times_become_the_fields_forms_or_an_error_naming_the_form():
    assert field_value("date", "10/11/2011") == "2011-10-11"
    assert field_value("date", "25/12/2011") == "2011-12-25"  # can only be day first
    assert field_value("date", "Tuesday, October 11th, 2011") == "2011-10-11"
    assert field_value("time", "8:04 PM") == field_value("time", "8:04pm") == "20:04"
    assert field_value("time", "12:30 AM") == "00:30" and field_value("time", "12 pm") == "12:00"
    assert field_value("week", "2011-w41") == "2011-W41"
    assert field_value("text", "10/11/2011") == "10/11/2011"  # other fields take text as it is
    for kind, text in [("date", "2011-02-30"), ("time", "13:00 PM"), ("time", "8"), ("month", "13/2011")]:
        with pytest.raises(ToolError, match="write it as"):
            field_value(kind, text)
    assert key_sequence("Control+A Delete") == ["Control+A", "Delete"] and key_sequence(" ") == [" "]
