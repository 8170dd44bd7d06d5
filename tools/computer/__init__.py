"""The computer tool: desktop control on a virtual display, with the screen described as text."""

from harmony_agent.tools.computer.screen import Screen, TextLine, Window
from harmony_agent.tools.computer.tool import ComputerTool

__all__ = ["ComputerTool", "Screen", "TextLine", "Window"]
