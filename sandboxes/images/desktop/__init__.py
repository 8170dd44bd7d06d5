"""The desktop image for ``VirtualDisplay(sandbox="docker")``: Xvfb, openbox, D-Bus with AT-SPI, and a few apps.

Built offline like the python image (debootstrap from the host's Debian
mirror, then ``docker import``), so no registry is needed:

    python -m harmony_agent.sandboxes.images.desktop          # about three minutes

Apps you want inside must be in the image: add their Debian packages to
``DESKTOP_PACKAGES`` (or pass ``packages=``) and rebuild.
"""

from __future__ import annotations

from collections.abc import Sequence

from harmony_agent.sandboxes.images import Progress, build_debian_image

DESKTOP_IMAGE = "harmony-agent/desktop:latest"
DESKTOP_LABEL = "org.harmony-agent.image=desktop"
DESKTOP_PACKAGES = (
    "xvfb",
    "xauth",
    "x11-xserver-utils",
    "x11-utils",
    "openbox",
    "dbus",
    "dbus-x11",
    "at-spi2-core",
    "xterm",
    "python3",
    "python3-tk",
    "python3-gi",
    "gir1.2-gtk-3.0",
    "fonts-dejavu-core",
    "galculator",
    "x11-apps",
)


def build_desktop_image(
    client,
    tag: str = DESKTOP_IMAGE,
    *,
    packages: Sequence[str] = DESKTOP_PACKAGES,
    mirror: str | None = None,
    progress: Progress = print,
) -> str:
    """Build the desktop image from Debian packages; returns the image id."""
    changes = [f"LABEL {DESKTOP_LABEL}", "ENV LANG=C.UTF-8"]
    return build_debian_image(client, tag, packages, changes, mirror=mirror, progress=progress)


def main() -> None:
    from harmony_agent.sandboxes.docker import docker_client

    build_desktop_image(docker_client(timeout=600))


if __name__ == "__main__":
    main()
