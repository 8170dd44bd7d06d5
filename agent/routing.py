"""Recipient routing: which tool answers a message's ``to=`` name.

gpt-oss sometimes addresses built-in tools through the functions namespace
(``functions.python``, ``functions.browser.search``) or glues the JSON
constraint to a function's name (``functions.get_weatherjson``). Those are
resolved here, against the tools actually present, so an alias never shadows
a real function of the same name.
"""

from __future__ import annotations

from collections.abc import Sequence

from harmony_agent.tools.base import FUNCTIONS_NAMESPACE, Tool


class Router:
    def __init__(self, tools: Sequence[Tool]) -> None:
        self.tools = list(tools)
        self._exact: dict[str, Tool] = {}
        self._namespaces: dict[str, Tool] = {}
        for tool in self.tools:
            for recipient in tool.recipients():
                if recipient in self._exact:
                    other = self._exact[recipient]
                    raise ValueError(
                        f"two tools answer {recipient!r}: {other!r} and {tool!r}. The model could call only one of "
                        f"them; rename yours (function_tool(name=...)) or leave one out"
                    )
                self._exact[recipient] = tool
            if tool.is_builtin:
                if tool.namespace in self._namespaces:
                    raise ValueError(
                        f"two built-in tools use the namespace {tool.namespace!r}: "
                        f"{self._namespaces[tool.namespace]!r} and {tool!r}"
                    )
                self._namespaces[tool.namespace] = tool

    async def relist(self) -> bool:
        """Ask every tool whether its functions changed, and learn the new names; True when any did.

        A name a tool gained mid-session that another tool already answers stays with the first tool.
        """
        changed = False
        for tool in self.tools:
            if await tool.relist():
                changed = True
                for recipient in tool.recipients():
                    self._exact.setdefault(recipient, tool)
        return changed

    async def resolve_or_relist(self, recipient: str) -> tuple[Tool, str] | None:
        """:meth:`resolve`, and if nothing answers, once more after :meth:`relist` found changes."""
        resolved = self.resolve(recipient)
        if resolved is None and await self.relist():
            resolved = self.resolve(recipient)
        return resolved

    def available(self) -> list[str]:
        return sorted(self._exact)

    def resolve(self, recipient: str) -> tuple[Tool, str] | None:
        """The tool and canonical recipient for ``recipient``, or None."""
        for candidate in self._candidates(recipient):
            if candidate in self._exact:
                return self._exact[candidate], candidate
            namespace = candidate.split(".", 1)[0]
            if namespace in self._namespaces:
                # A built-in namespace answers its own unknown functions (with an error of its own).
                return self._namespaces[namespace], candidate
        return None

    @staticmethod
    def _candidates(recipient: str) -> list[str]:
        names = [recipient]
        prefix = f"{FUNCTIONS_NAMESPACE}."
        if recipient.startswith(prefix):
            names.append(recipient[len(prefix) :])  # functions.python -> python
        else:
            names.append(prefix + recipient)  # get_weather -> functions.get_weather
        for name in list(names):
            if name.endswith("json") and len(name) > 4:
                names.append(name[: -len("json")].rstrip("."))  # functions.get_weatherjson
        return names

    def unknown_message(self, recipient: str) -> str:
        return f"There is no tool named {recipient!r}. Available recipients: {', '.join(self.available()) or 'none'}."
