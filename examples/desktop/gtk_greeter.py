"""The Greeter as a GTK app, which exposes an accessibility tree (Tk apps do not).

/usr/bin/python3 examples/desktop/gtk_greeter.py     # needs Debian's python3-gi and gir1.2-gtk-3.0
"""

import gi

gi.require_version("Gtk", "3.0")
from gi.repository import Gtk


def main() -> None:
    window = Gtk.Window(title="GTK Greeter")
    box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=6)
    entry = Gtk.Entry()
    entry.set_placeholder_text("your name")
    greeting = Gtk.Label(label="Nobody greeted yet")
    loudly = Gtk.CheckButton(label="Loudly")
    button = Gtk.Button(label="Greet")

    def greet(_button: Gtk.Button) -> None:
        text = f"Hello, {entry.get_text()}!"
        greeting.set_text(text.upper() if loudly.get_active() else text)

    button.connect("clicked", greet)
    for widget in (Gtk.Label(label="Name:"), entry, loudly, button, greeting):
        box.pack_start(widget, False, False, 0)
    window.add(box)
    window.connect("destroy", Gtk.main_quit)
    window.set_default_size(300, 200)
    window.move(100, 100)
    window.show_all()
    Gtk.main()


if __name__ == "__main__":
    main()
