"""The computer tool: desktop control on a virtual display, with the screen described as text."""

from .screen import Screen, TextLine, Window
from .tool import ComputerTool

__all__ = ["ComputerTool", "Screen", "TextLine", "Window"]
