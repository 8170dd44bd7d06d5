"""Our own MCP server, used by an agent: ``mcp serve`` offers python, and MCPTools takes it in.

    python -m examples.mcp_client_demo

The agent (a scripted stand-in for gpt-oss) reaches python through MCP, as it
would reach any MCP server's tools; the server keeps the kernel for the
session, so the second call sees the first one's variable.
"""

from __future__ import annotations

import json
import sys

from harmony_agent import Agent, ScriptedModel
from harmony_agent.tools import MCPTools


def call(code: str) -> str:
    arguments = json.dumps({"code": code})
    return f"<|channel|>commentary to=functions.python <|constrain|>json<|message|>{arguments}<|call|>"


def main() -> None:
    server = MCPTools(f"stdio:{sys.executable} -m harmony_agent.cli mcp serve --tools python")
    model = ScriptedModel(
        [
            call("total = sum(range(10))"),
            call("print(total * 2)"),
            "<|channel|>final<|message|>Twice the sum of 0..9 is 90.<|return|>",
        ]
    )
    with Agent(model, tools=[server]) as agent:
        result = agent.run("What is twice the sum of the numbers 0 to 9? Use python.")
        for event in result.events:
            if event.type == "tool_result":
                print(f"{event.recipient}: {event.content}")
        print(result.final_text)


if __name__ == "__main__":
    main()
