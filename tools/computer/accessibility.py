"""Reading the AT-SPI accessibility tree of the display's apps, over D-Bus (jeepney).

Apps that expose a tree (GTK; Qt with QT_LINUX_ACCESSIBILITY_ALWAYS_ON)
give exact names, roles, states and screen extents, which beats OCR for
buttons and fields. Tk and xterm expose none; for them OCR remains. The
tree is found through the display's session bus: ``org.a11y.Bus`` gives
the address of the accessibility bus, whose registry lists the apps.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

ACCESSIBLE = "org.a11y.atspi.Accessible"
REGISTRY = ("org.a11y.atspi.Registry", "/org/a11y/atspi/accessible/root")
STATE_CHECKED, STATE_FOCUSED, STATE_SHOWING = 4, 12, 25
#: Roles worth showing even without a name: the model can act on them.
ACTIONABLE = {
    "push button",
    "toggle button",
    "check box",
    "radio button",
    "text",
    "entry",
    "password text",
    "combo box",
    "menu item",
    "spin button",
    "slider",
    "link",
    "list item",
    "page tab",
    "table cell",
}
#: Roles whose text content is worth reading.
TEXT_ROLES = ("text", "entry", "password text", "spin button")
#: Containers that only add noise when they have no name.
SILENT = {"filler", "panel", "scroll pane", "viewport", "layered pane", "application", "unknown", "section", "invalid"}


@dataclass(frozen=True)
class AccessibleNode:
    role: str
    name: str
    x: int
    y: int
    width: int
    height: int
    depth: int
    checked: bool = False
    focused: bool = False
    text: str | None = None

    @property
    def center(self) -> tuple[int, int]:
        return self.x + self.width // 2, self.y + self.height // 2

    def describe(self) -> str:
        parts = [f"{'  ' * self.depth}- {self.role}"]
        if self.name:
            parts.append(f'"{self.name}"')
        if self.text is not None and self.text != self.name:
            parts.append(f'= "{self.text}"')
        if self.role in ("check box", "radio button", "toggle button"):
            parts.append("[x]" if self.checked else "[ ]")
        if self.focused:
            parts.append("[focused]")
        parts.append(f"at ({self.center[0]}, {self.center[1]})")
        return " ".join(parts)


class AccessibilityReader:
    """Walks the trees of the apps on one session bus. Connections are opened lazily and reused."""

    def __init__(self, session_bus: str, *, max_nodes: int = 400, timeout: float = 2.0) -> None:
        self.session_bus = session_bus
        self.max_nodes = max_nodes
        self.timeout = timeout
        self._connection: Any = None
        self._serials = itertools.count(1 << 20)  # our own serials for batched calls, clear of jeepney's

    def _bus(self) -> Any:
        if self._connection is None:
            from jeepney import DBusAddress, new_method_call
            from jeepney.io.blocking import open_dbus_connection

            with open_dbus_connection(self.session_bus) as session:
                reply = session.send_and_get_reply(
                    new_method_call(DBusAddress("/org/a11y/bus", "org.a11y.Bus", "org.a11y.Bus"), "GetAddress"),
                    timeout=self.timeout,
                )
            self._connection = open_dbus_connection(reply.body[0])
        return self._connection

    def _call(
        self, name: str, path: str, interface: str, method: str, signature: str | None = None, body: tuple = ()
    ) -> Any:
        from jeepney import DBusAddress, MessageType, new_method_call

        reply = self._bus().send_and_get_reply(
            new_method_call(DBusAddress(path, name, interface), method, signature, body), timeout=self.timeout
        )
        if reply.header.message_type == MessageType.error:
            raise LookupError(f"{interface}.{method} failed on {path}")
        return reply.body

    def _name(self, name: str, path: str) -> str:
        from jeepney import DBusAddress, Properties

        reply = self._bus().send_and_get_reply(
            Properties(DBusAddress(path, name, ACCESSIBLE)).get("Name"), timeout=self.timeout
        )
        return str(reply.body[0][1]) if reply.body else ""

    def read(self, window_title: str | None = None, *, batched: bool = True) -> list[AccessibleNode]:
        """The showing nodes of every app (or of the top-level window titled ``window_title``), in tree order.

        ``batched`` (the default) asks for a whole level of the tree at once: every node's role, name, state
        and children are requested together and the replies collected after, so a level costs one round trip
        instead of four per node. (AT-SPI's cache interface, which would give the tree in one call, is not
        exported by the GTK bridge here.) ``batched=False`` walks node by node, for comparison.
        """
        try:
            apps = self._call(*REGISTRY, ACCESSIBLE, "GetChildren")[0]
        except Exception:
            self.close()
            return []
        if not batched:
            nodes: list[AccessibleNode] = []
            for bus_name, path in apps:
                try:
                    self._walk(bus_name, path, 0, nodes, window_title, inside=window_title is None)
                except Exception:
                    continue  # an app that quit mid-walk, or one that answers badly: skip it
                if len(nodes) >= self.max_nodes:
                    break
            return nodes
        try:
            return self._read_batched(apps, window_title)
        except (TimeoutError, OSError, ConnectionError):
            self.close()
            return []

    def _batch(self, messages: list[Any]) -> list[Any]:
        """Send every message, then collect the replies: bodies in order, None for an error or no answer."""
        from jeepney import MessageType
        from jeepney.low_level import HeaderFields

        connection = self._bus()
        serials: dict[int, int] = {}
        for index, message in enumerate(messages):
            serial = next(self._serials)
            connection.send(message, serial=serial)
            serials[serial] = index
        replies: list[Any] = [None] * len(messages)
        deadline = time.monotonic() + self.timeout
        while serials:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the accessibility bus did not answer in time")
            reply = connection.receive(timeout=left)
            slot = serials.pop(reply.header.fields.get(HeaderFields.reply_serial), None)
            if slot is not None and reply.header.message_type == MessageType.method_return:
                replies[slot] = reply.body
        return replies

    def _read_batched(self, apps: list[tuple[str, str]], window: str | None) -> list[AccessibleNode]:
        """The tree a level per round trip, then the extents of what is shown in one more."""
        roots, shown = self._read_levels(apps, window)
        self._read_extents(shown)
        nodes: list[AccessibleNode] = []
        for root in roots:
            _emit(root, 0, nodes)
        return nodes[: self.max_nodes]

    def _read_levels(self, apps: list[tuple[str, str]], window: str | None) -> tuple[list[dict], list[dict]]:
        """Every node's role, name, state and children, asked for a whole level at once.

        Returns the root records (each with its ``children``) and the records to show.
        """
        from jeepney import DBusAddress, Properties

        # (bus, path, inside the asked-for window, parent's record) per node of the current level
        level: list[tuple[str, str, bool, dict | None]] = [(bus, path, window is None, None) for bus, path in apps]
        roots: list[dict] = []
        visited = 0
        shown: list[dict] = []
        while level and visited < self.max_nodes * 10:
            visited += len(level)
            replies = self._batch(
                [
                    message
                    for bus, path, _, _ in level
                    for message in (
                        _method(bus, path, ACCESSIBLE, "GetRoleName"),
                        Properties(DBusAddress(path, bus, ACCESSIBLE)).get("Name"),
                        _method(bus, path, ACCESSIBLE, "GetState"),
                        _method(bus, path, ACCESSIBLE, "GetChildren"),
                    )
                ]
            )
            next_level: list[tuple[str, str, bool, dict | None]] = []
            for index, (bus, path, inside, parent) in enumerate(level):
                role_body, name_body, state_body, children_body = replies[4 * index : 4 * index + 4]
                if role_body is None or state_body is None:
                    continue  # gone, or answering badly
                role, name = str(role_body[0]), str(name_body[0][1]) if name_body else ""
                if role == "frame" and window is not None:
                    if name != window:
                        continue
                    inside = True
                states = state_body[0]
                bits = (states[0] if states else 0) | ((states[1] if len(states) > 1 else 0) << 32)
                if role != "application" and not bits >> STATE_SHOWING & 1:
                    continue
                record: dict[str, Any] = {
                    "bus": bus,
                    "path": path,
                    "role": role,
                    "name": name,
                    "bits": bits,
                    "children": [],
                    "show": inside and role not in SILENT and bool(name or role in ACTIONABLE),
                }
                (parent["children"] if parent is not None else roots).append(record)
                if record["show"] and len(shown) < self.max_nodes:
                    shown.append(record)
                for child_bus, child_path in children_body[0] if children_body else []:
                    next_level.append((child_bus, child_path, inside, record))
            level = next_level
        return roots, shown

    def _read_extents(self, shown: list[dict]) -> None:
        """Extents (and text, for fields) of the nodes to show, in one batch, into their records."""
        asks = []
        for record in shown:
            asks.append(_method(record["bus"], record["path"], "org.a11y.atspi.Component", "GetExtents", "u", (0,)))
            asks.append(
                _method(record["bus"], record["path"], "org.a11y.atspi.Text", "GetText", "ii", (0, -1))
                if record["role"] in TEXT_ROLES
                else None
            )
        answered = iter(self._batch([ask for ask in asks if ask is not None]))
        for index, record in enumerate(shown):
            record["extents"] = next(answered)
            record["text"] = next(answered) if asks[2 * index + 1] is not None else None

    def _walk(
        self, bus_name: str, path: str, depth: int, nodes: list[AccessibleNode], window: str | None, inside: bool
    ) -> None:
        """Depth counts shown nodes only, so silent containers do not indent the listing."""
        if len(nodes) >= self.max_nodes:
            return
        role = self._call(bus_name, path, ACCESSIBLE, "GetRoleName")[0]
        name = self._name(bus_name, path)
        if role == "frame" and window is not None:
            if name != window:
                return  # another window: not asked for
            inside = True
        states = self._call(bus_name, path, ACCESSIBLE, "GetState")[0]
        bits = (states[0] if states else 0) | ((states[1] if len(states) > 1 else 0) << 32)
        if role != "application" and not bits >> STATE_SHOWING & 1:
            return  # hidden subtrees are not on screen
        child_depth = depth
        if inside and role not in SILENT and (name or role in ACTIONABLE):
            node = self._node(bus_name, path, role, name, bits, depth)
            if node is not None:
                nodes.append(node)
                child_depth = depth + 1
        for child_bus, child_path in self._call(bus_name, path, ACCESSIBLE, "GetChildren")[0]:
            self._walk(child_bus, child_path, child_depth, nodes, window, inside)

    def _node(self, bus_name: str, path: str, role: str, name: str, bits: int, depth: int) -> AccessibleNode | None:
        try:
            x, y, width, height = self._call(bus_name, path, "org.a11y.atspi.Component", "GetExtents", "u", (0,))[0]
        except Exception:
            return None
        if width <= 0 or height <= 0:
            return None
        text = None
        if role in TEXT_ROLES:
            try:
                text = str(self._call(bus_name, path, "org.a11y.atspi.Text", "GetText", "ii", (0, -1))[0])
            except Exception:
                text = None
        return AccessibleNode(
            role,
            name,
            x,
            y,
            width,
            height,
            depth,
            bool(bits >> STATE_CHECKED & 1),
            bool(bits >> STATE_FOCUSED & 1),
            text,
        )

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:
                pass
            self._connection = None


def _method(bus_name: str, path: str, interface: str, name: str, signature: str | None = None, body: tuple = ()) -> Any:
    from jeepney import DBusAddress, new_method_call

    return new_method_call(DBusAddress(path, bus_name, interface), name, signature, body)


def _emit(record: dict, depth: int, nodes: list[AccessibleNode]) -> None:
    """A record and its children as nodes; depth counts shown nodes only."""
    child_depth = depth
    extents = record.get("extents")
    if record["show"] and extents:
        x, y, width, height = extents[0]
        if width > 0 and height > 0:
            text = str(record["text"][0]) if record.get("text") else None
            checked = bool(record["bits"] >> STATE_CHECKED & 1)
            focused = bool(record["bits"] >> STATE_FOCUSED & 1)
            nodes.append(
                AccessibleNode(record["role"], record["name"], x, y, width, height, depth, checked, focused, text)
            )
            child_depth = depth + 1
    for child in record["children"]:
        _emit(child, child_depth, nodes)
