"""The desktop image for ``VirtualDisplay(sandbox="docker")``: Xvfb, openbox, D-Bus with AT-SPI, and a few apps.

Built offline like the python image (debootstrap from the host's Debian
mirror, then ``docker import``), so no registry is needed:

    python -m sandboxes.images.desktop          # about three minutes

Apps you want inside must be in the image: add their Debian packages to
``DESKTOP_PACKAGES`` (or pass ``packages=``) and rebuild.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .. import DEBIAN_SUITE, ImageBuildError, Progress, _stream, debian_mirror

DESKTOP_IMAGE = "harmony-agent/desktop:latest"
DESKTOP_LABEL = "org.harmony-agent.image=desktop"
DESKTOP_PACKAGES = ("xvfb", "xauth", "x11-xserver-utils", "x11-utils", "openbox", "dbus", "dbus-x11", "at-spi2-core", "xterm", "python3",
                    "python3-tk", "python3-gi", "gir1.2-gtk-3.0", "fonts-dejavu-core", "galculator", "x11-apps")


def build_desktop_image(client, tag: str = DESKTOP_IMAGE, *, packages: Sequence[str] = DESKTOP_PACKAGES,
                        mirror: str | None = None, progress: Progress = print) -> str:
    """Build the desktop image from Debian packages; returns the image id."""
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed: apt-get install debootstrap")
    if os.geteuid() != 0:
        raise ImageBuildError("the offline build runs debootstrap, which needs root: run it with sudo")
    mirror = mirror or debian_mirror()
    with tempfile.TemporaryDirectory(prefix="harmony-desktop-rootfs-") as work:
        root = Path(work) / "root"
        progress(f"debootstrap {DEBIAN_SUITE} with {len(packages)} desktop packages from {mirror}")
        _stream(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", DEBIAN_SUITE, str(root), mirror],
                progress)
        for leftovers in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (root / leftovers).glob("*"):
                if item.is_file():
                    item.unlink()
        archive = Path(work) / "root.tar"
        progress("packing the root filesystem")
        _stream(["tar", "--numeric-owner", "-C", str(root), "-cf", str(archive), "."], progress)
        repository, _, version = tag.rpartition(":") if ":" in tag.split("/")[-1] else (tag, "", "latest")
        progress(f"importing it as {tag}")
        client.api.import_image_from_file(str(archive), repository=repository, tag=version,
                                          changes=[f"LABEL {DESKTOP_LABEL}", "ENV LANG=C.UTF-8"])
    image = client.images.get(tag)
    progress(f"built {tag} ({image.attrs.get('Size', 0) / 1e6:.0f} MB)")
    return image.id


def main() -> None:
    from ...docker import docker_client

    build_desktop_image(docker_client(timeout=600))


if __name__ == "__main__":
    main()
