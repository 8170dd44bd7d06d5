"""The scripts a browser session runs in pages, as sources, and how a call of one is written.

Kept apart from the engine so the JavaScript the tool puts in pages can be read in one place: the hooks
installed in every frame, the snapshot that writes the text view, and the probes that tell whether a page
has settled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SNAPSHOT_SCRIPT = (Path(__file__).parent / "snapshot.js").read_text()
HOOKS_SCRIPT = (Path(__file__).parent / "hooks.js").read_text()
# How long since the DOM last changed, and how many short timers are pending (see hooks.js).
SETTLE_PROBE = (
    "(() => { const h = window.__harmonyHooks; return h ? [h.pending, performance.now() - h.changed] : [0, 1e9]; })()"
)
# The snapshot, taken only if the page is settled (no short timer pending, DOM quiet for the given ms): null if not.
# A quiet page is then read in the one round trip that also checks it is quiet.
SETTLED_SNAPSHOT_SCRIPT = (
    "([wantHtml, domQuietMs]) => { const h = window.__harmonyHooks;"
    " if (h && (h.pending || performance.now() - h.changed < domQuietMs)) return null;"
    f" return ({SNAPSHOT_SCRIPT.strip()})(wantHtml); }}"
)
# ``(read) => promise`` of ``{value: read()}``, taken once the document has loaded (all its load listeners run):
# by the hooks (see hooks.js: nothing the page's scripts replaced can answer for it), or, in a document without
# them (the first about:blank), here.
_AFTER_LOAD = (
    "((read) => { const h = window.__harmonyHooks; if (h && h.afterLoad) return h.afterLoad(read);"
    " return new Promise((resolve, reject) => { const go = () => { try { resolve({ __proto__: null, value: read() });"
    " } catch (error) { reject(error); } }; if (document.readyState === 'complete') go();"
    " else window.addEventListener('pageshow', go, { once: true }); }); })"
)
# The document's load, waited for in the page.
LOADED = f"{_AFTER_LOAD}(() => null)"
# Waits in the page for its load, then is the settled snapshot (null if not settled), as SETTLED_SNAPSHOT_SCRIPT:
# after a navigation has committed, the load and the view cost one round trip.
LOADED_SNAPSHOT_SCRIPT = f"(args) => {_AFTER_LOAD}(() => ({SETTLED_SNAPSHOT_SCRIPT})(args))"
# Pages do not get WebSockets and peer connections unless allowed: a socket's messages are not requests the policy
# sees one by one (its tunnel is checked by the proxy; a peer connection's datagrams are turned off in chromium.py).
NO_SOCKETS_SCRIPT = """(() => { for (const name of ["WebSocket", "WebTransport", "RTCPeerConnection", "webkitRTCPeerConnection"]) {
  try { Object.defineProperty(window, name, { value: undefined, configurable: false }); } catch (e) {} } })();"""


def call(function: str, argument: Any) -> str:
    """An expression that calls a page function (its source) with one JSON argument, for ``Runtime.evaluate``."""
    return f"({function.strip()})({json.dumps(argument)})"
