"""``python -m harmony_agent.sandboxes.images.desktop``: build the desktop image (see the package's docstring)."""

from harmony_agent.sandboxes.images.desktop import main

main()
