"""A GTK window with a large accessibility tree: a grid of buttons and check boxes (default 20 x 15).

    /usr/bin/python3 examples/desktop/gtk_grid.py [ROWS] [COLUMNS]

Used to measure reading a big tree over AT-SPI (benchmarks/desktop.py).
"""

from __future__ import annotations

import sys

import gi

gi.require_version("Gtk", "3.0")
from gi.repository import Gtk


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    columns = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    window = Gtk.Window(title="GTK Grid")
    grid = Gtk.Grid(row_spacing=0, column_spacing=0)
    for row in range(rows):
        for column in range(columns):
            label = f"r{row}c{column}"
            widget = Gtk.CheckButton(label=label) if (row + column) % 2 else Gtk.Button(label=label)
            grid.attach(widget, column, row, 1, 1)
    window.add(grid)
    window.move(0, 0)
    window.connect("destroy", Gtk.main_quit)
    window.show_all()
    Gtk.main()


if __name__ == "__main__":
    main()
