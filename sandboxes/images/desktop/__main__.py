"""``python -m sandboxes.images.desktop``: build the desktop image (see the package's docstring)."""

from . import main

main()
