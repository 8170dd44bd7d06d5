"""The data folder's total size is bounded in both sandboxes, on real Docker and real bubblewrap.

Each file was always capped (bubblewrap: RLIMIT_FSIZE), but many files were
not: 2 GB once went to the host's disk. Now past ``Limits.data_mb`` a write
fails inside the sandbox with ENOSPC, nothing more reaches the host, the
model is told what to do, and the session carries on.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from harmony_agent.sandboxes import Limits
from helpers import ROOT
from helpers.available import KINDS, make

LIMIT_MB = 48
FILL = """
import errno, os
os.makedirs('fill', exist_ok=True)
written, failure = 0, None
try:
    for i in range(40):                      # 40 files of 4 MB: 160 MB, over three times the limit
        with open(f'fill/{i:02}.bin', 'wb') as f:
            for _ in range(4):
                f.write(b'x' * (1 << 20)); f.flush(); written += 1 << 20
except OSError as exc:
    failure = exc.errno
written, failure == errno.ENOSPC
"""


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


@pytest.mark.parametrize("kind", KINDS)
async def test_writing_past_the_data_limit_fails_with_enospc_and_the_session_carries_on(kind):
    if kind == "bubblewrap" and os.geteuid() != 0:
        pytest.skip("only root can mount the bounded tmpfs; as another user bubblewrap bounds each file only")
    async with make(kind, timeout=60, limits=Limits(data_mb=LIMIT_MB)) as box:
        filled = await box.execute(FILL)
        assert filled.status == "ok", filled
        written, out_of_space = ast.literal_eval(filled.result)
        assert out_of_space, filled.result
        assert (LIMIT_MB - 8) << 20 <= written <= LIMIT_MB << 20  # the limit, not the 160 MB asked for
        assert f"/mnt/data bounded to {LIMIT_MB} MB" in box.describe() or kind == "docker"
        failed = await box.execute("open('fill/more.bin', 'wb').write(b'y' * (2 << 20))")
        assert failed.status == "error" and "No space left on device" in failed.error.evalue
        assert any(f"/mnt/data {LIMIT_MB} MB" in note and "Delete files" in note for note in failed.notes), failed.notes

        if kind == "bubblewrap":  # the host sees the same files, on a tmpfs of its own, not on its disk
            data = Path(box.data_dir)
            assert folder_bytes(data) == written
            assert os.stat(data).st_dev != os.stat(tempfile.gettempdir()).st_dev
            stats = os.statvfs(data)
            assert stats.f_blocks * stats.f_frsize <= LIMIT_MB << 20

        kept = await box.execute("import os\nsorted(os.listdir('fill'))[:2]")
        await box.restart()  # files outlive a kernel restart as before
        after = await box.execute("import os\nsorted(os.listdir('fill'))[:2]")
        assert after.result == kept.result == "['00.bin', '01.bin']"
        assert await box.download("fill/00.bin") == b"x" * (4 << 20)

        freed = await box.execute(
            "import shutil\nshutil.rmtree('fill')\nopen('again.bin', 'wb').write(b'z' * (32 << 20))"
        )
        assert (freed.status, freed.result) == ("ok", str(32 << 20)), freed
        assert (await box.execute("6 * 7")).result == "42"
        if kind == "bubblewrap":
            assert folder_bytes(Path(box.data_dir)) == 32 << 20
            data_dir = box.data_dir
    if kind == "bubblewrap":
        assert not Path(data_dir).exists() and not os.path.ismount(data_dir)  # unmounted and removed at close


def test_a_user_who_may_not_mount_gets_the_reason_and_a_plain_folder():
    """Not root, the tmpfs cannot be mounted: the caller learns why, and nothing is mounted."""
    folder = Path(tempfile.mkdtemp(prefix="harmony-disk-test-"))  # in /tmp, where the user nobody can reach it
    os.chmod(folder, 0o777)
    # The module's own source, run by the system Python as nobody (who may read neither this checkout nor its venv).
    source = (ROOT / "sandboxes" / "datafs.py").read_text()
    probe = source + "\nimport sys\nprint(mount_bounded(Path(sys.argv[1]), 8)); print(is_mounted(Path(sys.argv[1])))"
    python = "/usr/bin/python3" if os.geteuid() == 0 else sys.executable
    run = subprocess.run(
        [python, "-c", probe, str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        **({"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}),
    )
    folder.rmdir()
    assert run.returncode == 0, run.stderr
    reason, mounted = run.stdout.splitlines()
    assert reason == "cannot mount a tmpfs: Operation not permitted" and mounted == "False"
