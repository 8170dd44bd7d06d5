"""Tools an agent can call, routed by their harmony recipient name."""

from .base import Tool, ToolCall, ToolError, ToolResult
from .functions import FunctionTool, function_tool

__all__ = ["FunctionTool", "Tool", "ToolCall", "ToolError", "ToolResult", "function_tool"]
