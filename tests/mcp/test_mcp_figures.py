"""``mcp serve``: a figure the python tool draws comes back as MCP image content, checked with the ``mcp`` SDK client.

The figure is copied out of the sandbox through the sandbox (never read at a
host path the sandbox names), sent as base64 PNG content, and a path the
kernel was told to list as its image (a host file) is never sent.
"""

from __future__ import annotations

import base64
import os
import sys

import pytest

from helpers import ROOT
from helpers.available import KINDS, require

pytest.importorskip("mcp")

from mcp import Client, StdioServerParameters


@pytest.mark.parametrize("kind", KINDS)
async def test_a_python_figure_comes_back_as_image_content_and_a_named_host_file_never_does(kind, tmp_path):
    require(kind)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG host secret 5d0e")
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "harmony_agent.cli", "mcp", "serve", "--tools", "python", "--sandbox", kind],
        cwd=str(ROOT),
        env={"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "")},
    )
    code = (
        "import numpy as np, matplotlib.pyplot as plt\nx = np.linspace(0, 6.3, 50)\nplt.plot(x, np.sin(x))\n"
        "import gc\nk = next(o for o in gc.get_objects() if type(o).__name__ == 'Kernel' and hasattr(o, 'images'))\n"
        f"k.images.append({str(secret)!r})"
    )
    async with Client(params) as client:
        result = await client.call_tool("python", {"code": code})
    assert not result.is_error, result
    images = [block for block in result.content if block.type == "image"]
    assert len(images) == 1, result.content
    data = base64.b64decode(images[0].data)
    assert data[:4] == b"\x89PNG" and b"host secret" not in data
    assert images[0].mime_type == "image/png"
