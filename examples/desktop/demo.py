"""Desktop control on a virtual display: the computer tool drives the Greeter app from OCR'd text.

    .venv/bin/python -m examples.desktop.demo             # add --model URL to use a real gpt-oss server

It starts its own Xvfb display (your screen is never touched), allows the
Greeter app, and lets the model launch it and greet someone with a non-ASCII name.
Screenshots after each action go to ``runs/desktop.screenshots``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from examples.demo_run import demo_arguments, screenshots_beside, stream_run
from examples.desktop.greeter_policy import policy
from harmony_agent import Agent, PolicyModel
from harmony_agent.tools.computer import ComputerTool

GREETER = Path(__file__).with_name("greeter.py")


async def demo(model: object, transcript: Path | None) -> str:
    tool = ComputerTool(apps={"greeter": [sys.executable, str(GREETER)]}, screenshots=screenshots_beside(transcript))
    async with Agent(model, tools=[tool], reasoning="low", transcript=transcript, max_steps=12) as agent:
        print(await tool.start())
        return await stream_run(agent, "Greet Zoë Ørsted in the Greeter app and tell me what it says.")


def main() -> None:
    args = demo_arguments(__doc__.splitlines()[0], "runs/desktop.jsonl")
    asyncio.run(demo(args.model or PolicyModel(policy), args.transcript))


if __name__ == "__main__":
    main()
