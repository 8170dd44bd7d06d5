"""Reading the AT-SPI accessibility tree of the display's apps, over D-Bus (jeepney).

Apps that expose a tree (GTK; Qt with QT_LINUX_ACCESSIBILITY_ALWAYS_ON)
give exact names, roles, states and screen extents, which beats OCR for
buttons and fields. Tk and xterm expose none; for them OCR remains. The
tree is found through the display's session bus: ``org.a11y.Bus`` gives
the address of the accessibility bus, whose registry lists the apps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ACCESSIBLE = "org.a11y.atspi.Accessible"
REGISTRY = ("org.a11y.atspi.Registry", "/org/a11y/atspi/accessible/root")
STATE_CHECKED, STATE_FOCUSED, STATE_SHOWING = 4, 12, 25
#: Roles worth showing even without a name: the model can act on them.
ACTIONABLE = {"push button", "toggle button", "check box", "radio button", "text", "entry", "password text",
              "combo box", "menu item", "spin button", "slider", "link", "list item", "page tab", "table cell"}
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

    def _bus(self) -> Any:
        if self._connection is None:
            from jeepney import DBusAddress, new_method_call
            from jeepney.io.blocking import open_dbus_connection

            with open_dbus_connection(self.session_bus) as session:
                reply = session.send_and_get_reply(
                    new_method_call(DBusAddress("/org/a11y/bus", "org.a11y.Bus", "org.a11y.Bus"), "GetAddress"), timeout=self.timeout)
            self._connection = open_dbus_connection(reply.body[0])
        return self._connection

    def _call(self, name: str, path: str, interface: str, method: str, signature: str | None = None, body: tuple = ()) -> Any:
        from jeepney import DBusAddress, MessageType, new_method_call

        reply = self._bus().send_and_get_reply(new_method_call(DBusAddress(path, name, interface), method, signature, body),
                                               timeout=self.timeout)
        if reply.header.message_type == MessageType.error:
            raise LookupError(f"{interface}.{method} failed on {path}")
        return reply.body

    def _name(self, name: str, path: str) -> str:
        from jeepney import DBusAddress, Properties

        reply = self._bus().send_and_get_reply(Properties(DBusAddress(path, name, ACCESSIBLE)).get("Name"), timeout=self.timeout)
        return str(reply.body[0][1]) if reply.body else ""

    def read(self, window_title: str | None = None) -> list[AccessibleNode]:
        """The showing nodes of every app (or of the top-level window titled ``window_title``)."""
        nodes: list[AccessibleNode] = []
        try:
            apps = self._call(*REGISTRY, ACCESSIBLE, "GetChildren")[0]
        except Exception:
            self.close()
            return []
        for bus_name, path in apps:
            try:
                self._walk(bus_name, path, 0, nodes, window_title, inside=window_title is None)
            except Exception:
                continue  # an app that quit mid-walk, or one that answers badly: skip it
            if len(nodes) >= self.max_nodes:
                break
        return nodes

    def _walk(self, bus_name: str, path: str, depth: int, nodes: list[AccessibleNode], window: str | None, inside: bool) -> None:
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
        if role in ("text", "entry", "password text", "spin button"):
            try:
                text = str(self._call(bus_name, path, "org.a11y.atspi.Text", "GetText", "ii", (0, -1))[0])
            except Exception:
                text = None
        return AccessibleNode(role, name, x, y, width, height, depth, bool(bits >> STATE_CHECKED & 1),
                              bool(bits >> STATE_FOCUSED & 1), text)

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:
                pass
            self._connection = None
