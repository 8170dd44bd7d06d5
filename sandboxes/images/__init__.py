"""Building the code-interpreter image that DockerSandbox runs.

Two paths produce equivalent images: a Dockerfile (``images/python``) for
machines that can pull ``python:3.12-slim``, and an offline path for machines
that can reach only a Debian mirror: debootstrap a minimal Debian root with
Python, IPython and the scientific packages, then ``docker import`` it.
Both label the image with :data:`IMAGE_VERSION`, so set-up can tell an image
built for an older version of the project and rebuild it. The sandbox
sends its kernel in at every start, so an image never goes stale when the
kernel changes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

DEFAULT_IMAGE = "harmony-agent/python:latest"
DOCKERFILE_DIR = Path(__file__).parent / "python"
DEBIAN_SUITE = "bookworm"
DEBIAN_PACKAGES = (
    "python3",
    "python3-ipython",
    "python3-numpy",
    "python3-pandas",
    "python3-matplotlib",
    "python3-scipy",
    "python3-sympy",
    "python3-pil",
)
IMAGE_LABEL = "org.harmony-agent.image=python"
#: Raised whenever what the image must hold changes (2: IPython for notebook cells), so set-up rebuilds an older one.
IMAGE_VERSION = "2"
VERSION_LABEL = "org.harmony-agent.image-version"
#: Documentation, manual pages and translations: nothing a sandboxed cell reads, about 80 MB.
PRUNED = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale")
#: Debian's python3-scipy depends on python3-pythran, a compiler that brings gcc, g++, binutils, Boost
#: headers and every -dev package with it (about 500 MB). Nothing imports them at run time, and a
#: sandbox is better without a compiler, so the offline build purges them after debootstrap.
BUILD_ONLY = re.compile(
    r"^(python3-pythran|python3-beniget|python3-gast|[\w.+-]+-dev|libc-dev-bin|g\+\+(-\d+)?|gcc(-\d+)?"
    r"|cpp(-\d+)?|binutils[\w-]*|libbinutils|libctf[\w-]*|libgprofng\d+|libsframe\d+|libjansson\d+"
    r"|lib(a|t|l|ub|hwa)san\d+|libcc1-\d+|libisl\d+)$"
)

Progress = Callable[[str], None]


class ImageBuildError(RuntimeError):
    """The image could not be built; the message says why and what to do."""


def image_outdated(client, tag: str = DEFAULT_IMAGE) -> str | None:
    """Why the image must be (re)built: missing, or built for an older version of this project; None when current."""
    from docker.errors import ImageNotFound

    try:
        image = client.images.get(tag)
    except ImageNotFound:
        return f"{tag} is missing"
    found = (image.labels or {}).get(VERSION_LABEL)
    if found != IMAGE_VERSION:
        return f"{tag} is version {found or 'unlabelled'}, this project needs version {IMAGE_VERSION} (it adds IPython)"
    return None


def debian_mirror() -> str:
    """The Debian mirror this host's apt uses, so the offline build needs no other network."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            if words[0] == "URIs:" and len(words) > 1 and "security" not in words[1]:
                return words[1]
            if words[0] == "deb":
                urls = [w for w in words[1:] if "://" in w]
                if urls and "security" not in urls[0]:
                    return urls[0]
    return "http://deb.debian.org/debian"


def _stream(command: list[str], progress: Progress) -> None:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    assert process.stdout is not None
    tail: list[str] = []
    for line in process.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-20:]
        progress(line)
    if process.wait() != 0:
        raise ImageBuildError(f"{command[0]} failed (exit {process.returncode}):\n" + "\n".join(tail))


def _purge_build_only(root: Path, progress: Progress) -> None:
    listed = subprocess.run(
        ["chroot", str(root), "dpkg-query", "-W", "-f=${Package}\\n"], capture_output=True, text=True, check=True
    )
    doomed = sorted(name for name in listed.stdout.split() if BUILD_ONLY.match(name))
    if doomed:
        progress(f"purging {len(doomed)} build-only packages (compilers, headers) that python3-pythran pulled in")
        _stream(["chroot", str(root), "dpkg", "--purge", "--force-depends", *doomed], progress)


def build_debian_image(
    client,
    tag: str,
    packages: Sequence[str],
    changes: Sequence[str],
    *,
    mirror: str | None = None,
    prepare: Callable[[Path], None] | None = None,
    progress: Progress = print,
) -> str:
    """Debootstrap a minimal Debian root with ``packages``, let ``prepare`` trim it, ``docker import`` it; returns the image id.

    The one offline path every image takes (python, desktop): it needs only
    the host's Debian mirror, never a registry. ``changes`` are Dockerfile
    lines (LABEL, ENV, USER...) applied at import.
    """
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed: apt-get install debootstrap")
    if os.geteuid() != 0:
        raise ImageBuildError("the offline build runs debootstrap, which needs root: run it with sudo")
    mirror = mirror or debian_mirror()
    with tempfile.TemporaryDirectory(prefix="harmony-rootfs-") as work:
        root = Path(work) / "root"
        progress(f"debootstrap {DEBIAN_SUITE} with {len(packages)} packages from {mirror} (a minute or more)")
        _stream(
            ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", DEBIAN_SUITE, str(root), mirror],
            progress,
        )
        for leftovers in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (root / leftovers).glob("*"):
                if item.is_file():
                    item.unlink()
        if prepare is not None:
            prepare(root)
        archive = Path(work) / "root.tar"
        progress("packing the root filesystem")
        _stream(["tar", "--numeric-owner", "-C", str(root), "-cf", str(archive), "."], progress)
        progress(f"importing it as {tag}")
        repository, _, version = tag.rpartition(":") if ":" in tag.split("/")[-1] else (tag, "", "latest")
        client.api.import_image_from_file(str(archive), repository=repository, tag=version, changes=list(changes))
    image = client.images.get(tag)
    progress(f"built {tag} ({image.short_id.split(':')[-1]}, {image.attrs.get('Size', 0) / 1e6:.0f} MB)")
    return image.id


def build_offline(client, tag: str = DEFAULT_IMAGE, *, mirror: str | None = None, progress: Progress = print) -> str:
    """Build the python image from Debian packages (debootstrap + ``docker import``); returns the image id."""

    def prepare(root: Path) -> None:
        _purge_build_only(root, progress)
        for folder in PRUNED:
            shutil.rmtree(root / folder, ignore_errors=True)
        (root / "mnt/data").mkdir(parents=True, exist_ok=True)
        os.chown(root / "mnt/data", 65534, 65534)

    changes = [
        "ENV MPLBACKEND=Agg",
        "ENV PYTHONUNBUFFERED=1",
        "ENV HOME=/tmp",
        f"LABEL {IMAGE_LABEL}",
        f"LABEL {VERSION_LABEL}={IMAGE_VERSION}",
        "USER 65534:65534",
        "WORKDIR /mnt/data",
    ]
    return build_debian_image(client, tag, DEBIAN_PACKAGES, changes, mirror=mirror, prepare=prepare, progress=progress)


def build_dockerfile(client, tag: str = DEFAULT_IMAGE, *, progress: Progress = print) -> str:
    """Build the image from the Dockerfile (needs registry access for the base image)."""
    from docker.errors import APIError, BuildError

    try:
        for chunk in client.api.build(
            path=str(DOCKERFILE_DIR), tag=tag, rm=True, decode=True, labels={VERSION_LABEL: IMAGE_VERSION}
        ):
            if "error" in chunk:
                raise ImageBuildError(
                    f"docker build failed: {chunk['error'].strip()}\n(no registry access? try --offline)"
                )
            text = chunk.get("stream", "").rstrip()
            if text:
                progress(text)
    except (APIError, BuildError) as exc:
        raise ImageBuildError(f"docker build failed: {exc}") from exc
    return client.images.get(tag).id
