"""Tools an agent can call, routed by their harmony recipient name."""

from .base import Tool, ToolCall, ToolError, ToolResult
from .browser import BrowserTool
from .computer import ComputerTool
from .functions import FunctionTool, function_tool
from .mcp import MCPTools
from .python import PythonTool

__all__ = ["BrowserTool", "ComputerTool", "FunctionTool", "MCPTools", "PythonTool", "Tool", "ToolCall", "ToolError", "ToolResult",
           "function_tool"]
