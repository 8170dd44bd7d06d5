"""Bubblewrap's /mnt/data is bounded in total, as Docker's is: many files cannot fill the host's disk."""

from __future__ import annotations

import ast
import os

import pytest

from available import require
from sandboxes import Limits, LocalSandbox

FILL = """
import errno, os
written, error = 0, None
for i in range(40):
    try:
        with open(f"chunk-{i}.bin", "wb") as f:
            f.write(b"x" * (1024 * 1024))
        written += 1
    except OSError as exc:
        error = errno.errorcode.get(exc.errno, str(exc.errno))
        break
(written, error)
"""


async def test_the_data_folder_holds_no_more_than_its_limit_and_keeps_working():
    require("bubblewrap")
    if os.geteuid() != 0:
        pytest.skip("the bound is a tmpfs mounted on the host, which needs root (Docker bounds it otherwise)")
    async with LocalSandbox(limits=Limits(memory_mb=2048, data_mb=16)) as box:
        filled = await box.execute(FILL)
        assert filled.status == "ok", filled
        written, error = ast.literal_eval(filled.result)
        assert error == "ENOSPC" and 10 <= written <= 16, filled.result
        host = os.statvfs(box.data_dir)
        assert host.f_blocks * host.f_frsize <= 16 * 1024 * 1024  # the host side is the same bounded folder
        assert "bounded at 16 MB" in box.describe()
        # Deleting frees the space again, and files outlive a kernel restart.
        freed = await box.execute("import os\nfor name in os.listdir('.'):\n    os.remove(name)\n"
                                  "open('kept.txt', 'w').write('still here')\nsorted(os.listdir('.'))")
        assert freed.status == "ok" and "kept.txt" in freed.result
        await box.restart()
        after = await box.execute("open('kept.txt').read()")
        assert after.result == "'still here'"
        folder = box.data_dir
    assert not os.path.exists(folder)  # unmounted and removed on close
