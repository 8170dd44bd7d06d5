"""Serve an agent over OpenAI's Responses and Chat Completions APIs, with a page to watch and talk to it."""

from harmony_agent.server.app import create_app, serve
from harmony_agent.server.conversations import ClientFunction, ServerConfig

__all__ = ["ClientFunction", "ServerConfig", "create_app", "serve"]
