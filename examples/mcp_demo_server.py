"""A small MCP server written with the ``mcp`` SDK, for the MCP examples and tests.

Run it over stdio (what ``--mcp "stdio:python -m examples.mcp_demo_server"``
does) or over streamable HTTP on 127.0.0.1::

    python -m examples.mcp_demo_server                 # stdio
    python -m examples.mcp_demo_server --http 8931     # http://127.0.0.1:8931/mcp

Its tools show each kind of answer an MCP tool gives: text, structured
content, an image, an error, a crash, and a change of its own tool list.
"""

from __future__ import annotations

import argparse
import os
import struct
import zlib

import anyio
from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("demo", instructions="Tools of the harmony-agent MCP demo server.")
_counter = {"calls": 0}


@server.tool()
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@server.tool()
def city_weather(city: str, unit: str = "celsius") -> dict:
    """Current weather in a city, as structured data.

    Args:
        city: The city's name.
        unit: celsius or fahrenheit.
    """
    if city.lower() == "atlantis":
        raise ToolError(f"no weather station in {city}")
    temperature = 21.0 if unit == "celsius" else 69.8
    return {"city": city, "temperature": temperature, "unit": unit}


@server.tool()
def count() -> int:
    """How many times this tool was called in this server process (to see a restart)."""
    _counter["calls"] += 1
    return _counter["calls"]


@server.tool()
def red_square(size: int = 4) -> Image:
    """A red square, as a PNG image."""
    size = max(1, min(size, 64))
    return Image(data=_png(size), format="png")


@server.tool()
async def wait(seconds: float) -> str:
    """Answer after `seconds` (to see a client give up on a slow tool)."""
    await anyio.sleep(seconds)
    return f"waited {seconds:g} s"


@server.tool()
def crash() -> str:
    """Kill this server process mid-call (to see the client recover)."""
    os._exit(3)


@server.tool()
async def unlock(ctx: Context) -> str:
    """Add the tool `secret` and remove `count`, then tell the client its tool list changed."""
    if "secret" not in {tool.name for tool in await server.list_tools()}:
        server.add_tool(_secret, name="secret")
        server.remove_tool("count")
    await ctx.request_context.session.send_tool_list_changed()  # clients of the initialize handshake
    await ctx.notify_tools_changed()  # clients of the 2026 protocol that listen
    return "unlocked"


def _secret() -> str:
    """The secret word."""
    return "swordfish"


def _png(size: int) -> bytes:
    """A solid red PNG, written by hand so the example needs no imaging library."""
    row = b"\x00" + b"\xff\x00\x00" * size
    raw = row * size

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT/mcp")
    options = parser.parse_args()
    if options.http:
        server.run("streamable-http", host="127.0.0.1", port=options.http)
    else:
        server.run()


if __name__ == "__main__":
    main()
