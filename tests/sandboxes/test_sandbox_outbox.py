"""Files and images come out of a sandbox through the sandbox, never by a host path the sandbox names.

Each attack runs for real on Docker and on bubblewrap: a cell that appends a
host file's path to the kernel's image list, a symlink in /mnt/data (and a
symlinked folder) pointing at a host file, a file over the size cap, and
thousands of display() images. None of the host file's bytes may reach the
host folder the files are copied to, and each gets a note saying why.
"""

from __future__ import annotations

import pytest

from harmony_agent.sandboxes import LocalSandbox
from harmony_agent.tools.base import ToolCall
from harmony_agent.tools.python import PythonTool
from helpers.available import KINDS, make

SECRET = b"host-secret-4f1c9a: this must never leave the host's own folder"

KERNEL = (
    "import gc\nkernel = next(o for o in gc.get_objects() if type(o).__name__ == 'Kernel' and hasattr(o, 'images'))\n"
)


@pytest.fixture(params=KINDS)
async def sandbox(request):
    box = make(request.param, timeout=60, kernel="ipython")
    await box.start()
    yield box
    await box.close()


@pytest.fixture
def host_secret(tmp_path):
    """A file only the host can see, as the target of every attack."""
    secret = tmp_path / "secret" / "passwd.png"
    secret.parent.mkdir()
    secret.write_bytes(SECRET)
    return secret


def leaked(folder) -> list[str]:
    """Files under ``folder`` that hold the host secret (or are links at all)."""
    return [str(p) for p in folder.rglob("*") if p.is_symlink() or (p.is_file() and SECRET in p.read_bytes())]


async def test_a_cell_naming_host_paths_as_its_images_brings_nothing_home(sandbox, host_secret, tmp_path):
    out = tmp_path / "out"
    names = [str(host_secret), "/etc/passwd", "/mnt/data/../../etc/passwd", "../../etc/passwd", "/mnt/data/\x1b]52;c;x"]
    reply = await sandbox.execute(KERNEL + f"kernel.images.extend({names!r})")
    assert reply.status == "ok", reply
    assert reply.images == ()  # none is a name inside the data folder
    assert any("5 image name(s) from the sandbox were ignored" in note for note in reply.notes), reply.notes
    collected = await sandbox.bring_home(out, names)
    assert collected.files == [] and collected.skipped == 5
    assert all("not copied out of the sandbox" in note for note in collected.notes), collected.notes
    assert leaked(tmp_path / "out") == [] if out.exists() else True


async def test_a_symlink_in_the_data_folder_pointing_out_is_not_followed(sandbox, host_secret, tmp_path):
    out = tmp_path / "out"
    reply = await sandbox.execute(
        "import os\n"
        f"os.symlink({str(host_secret)!r}, 'leak.png')\n"
        f"os.symlink({str(host_secret.parent)!r}, 'folder')\n"
        "os.symlink('/etc/passwd', 'passwd.txt')\n"
        "open('real.txt', 'w').write('made in the sandbox')\n"
        + KERNEL
        + "kernel.images.extend(['/mnt/data/leak.png', '/mnt/data/folder/passwd.png'])"
    )
    assert reply.status == "ok", reply
    assert reply.images == ("/mnt/data/leak.png", "/mnt/data/folder/passwd.png")  # names inside: now fetched safely
    named = await sandbox.bring_home(out, reply.images)
    assert named.files == [] and named.skipped == 2, named
    assert all("link" in note or "missing" in note for note in named.notes), named.notes
    everything = await sandbox.bring_home(out)
    assert [p.name for p in everything.files] == ["real.txt"], everything
    assert (out / "real.txt").read_text() == "made in the sandbox"
    assert leaked(out) == []


async def test_a_file_over_the_cap_stays_in_the_sandbox_with_a_note(sandbox, tmp_path):
    out = tmp_path / "out"
    await sandbox.execute("open('big.bin', 'wb').write(b'x' * 3_000_000)\nopen('small.txt', 'w').write('ok')")
    collected = await sandbox.bring_home(out, max_file_bytes=1_000_000)
    assert [p.name for p in collected.files] == ["small.txt"]
    assert any("big.bin (3,000,000 bytes) is over the 1,000,000-byte cap" in note for note in collected.notes)
    assert not (out / "big.bin").exists()
    named = await sandbox.bring_home(out, ["/mnt/data/big.bin"], max_file_bytes=1_000_000)
    assert named.files == [] and "over the 1,000,000-byte cap" in named.notes[0]


async def test_thousands_of_images_are_capped_in_the_reply_and_in_what_comes_home(sandbox, tmp_path):
    png = (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
        b"\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef\x00\x00\x00\x00IEND\xaeB`\x82"
    )
    reply = await sandbox.execute(
        f"from IPython.display import Image, display\nfor _ in range(2000):\n    display(Image(data={png!r}))"
    )
    assert reply.status == "ok", reply
    assert len(reply.images) == 20 and reply.images[0] == "/mnt/data/display-1.png"
    assert any("1980 more images were saved in /mnt/data than the 20 listed" in note for note in reply.notes)
    everything = await sandbox.bring_home(tmp_path / "out", max_files=100)
    assert len(everything.files) == 100 and everything.skipped == 1900
    assert any("1900 more files stay in the sandbox" in note for note in everything.notes)


async def test_the_python_tool_returns_copies_of_its_figures_and_never_the_sandboxs_word(
    sandbox, host_secret, tmp_path
):
    tool = PythonTool(sandbox, output_dir=tmp_path / "out")
    code = (
        "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\n"
        + KERNEL
        + f"kernel.images.append({str(host_secret)!r})"
    )
    result = await tool.process(ToolCall("python", None, code))
    assert not result.is_error, result.error
    assert result.images == (str(tmp_path / "out" / "figure-1.png"),)
    assert (tmp_path / "out" / "figure-1.png").read_bytes()[:4] == b"\x89PNG"
    assert result.files == ()
    assert leaked(tmp_path / "out") == []


async def test_only_new_or_changed_files_come_home_again(sandbox, tmp_path):
    out = tmp_path / "out"
    await sandbox.execute("open('a.txt', 'w').write('one')\nopen('b.txt', 'w').write('two')")
    first = await sandbox.bring_home(out)
    assert sorted(p.name for p in first.files) == ["a.txt", "b.txt"]
    assert (await sandbox.bring_home(out)).files == []  # nothing changed: nothing copied
    await sandbox.execute("import time\ntime.sleep(1.1)\nopen('a.txt', 'w').write('changed')")
    again = await sandbox.bring_home(out)
    assert [p.name for p in again.files] == ["a.txt"] and (out / "a.txt").read_text() == "changed"


@pytest.mark.filterwarnings("ignore:LocalSandbox.isolation='unsandboxed'.:RuntimeWarning")
async def test_an_unsandboxed_kernels_host_folder_is_named_as_the_data_folder(tmp_path):
    async with LocalSandbox(isolation="unsandboxed") as box:
        reply = await box.execute("import matplotlib.pyplot as plt\nplt.plot([1, 2])\nopen('t.txt', 'w').write('x')")
        assert reply.images == ("/mnt/data/figure-1.png",) and "/mnt/data/t.txt" in reply.files, reply
        named = await box.bring_home(tmp_path / "out", reply.images)
        assert [p.name for p in named.files] == ["figure-1.png"]
