"""Tools an agent can call, routed by their harmony recipient name."""

from harmony_agent.tools.base import Tool, ToolCall, ToolError, ToolResult
from harmony_agent.tools.browser import BrowserTool
from harmony_agent.tools.computer import ComputerTool
from harmony_agent.tools.functions import FunctionTool, function_tool
from harmony_agent.tools.mcp import MCPTools
from harmony_agent.tools.python import PythonTool

__all__ = [
    "BrowserTool",
    "ComputerTool",
    "FunctionTool",
    "MCPTools",
    "PythonTool",
    "Tool",
    "ToolCall",
    "ToolError",
    "ToolResult",
    "function_tool",
]
