"""Serve an agent over OpenAI's Responses API, with a page to watch and talk to it."""

from harmony_agent.server.app import ClientFunction, ServerConfig, create_app, serve

__all__ = ["ClientFunction", "ServerConfig", "create_app", "serve"]
