"""What the demos share: their command line, and streaming one agent run to the console."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from harmony_agent import Agent
from harmony_agent.cli.console import ConsoleView


def demo_arguments(description: str, default_transcript: str) -> argparse.Namespace:
    """--model (a real gpt-oss instead of the scripted stand-in) and --transcript, whose folder is created."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", help="a gpt-oss server URL or hub id (default: the demo's scripted stand-in policy)")
    parser.add_argument("--transcript", type=Path, default=Path(default_transcript))
    args = parser.parse_args()
    args.transcript.parent.mkdir(parents=True, exist_ok=True)
    return args


async def stream_run(agent: Agent, task: str) -> str:
    """Run ``task``, printing the run as the CLI does; returns the final answer."""
    view = ConsoleView(Console(highlight=False))
    async for event in agent.stream(task):
        view.handle(event)
    return agent.last_result.final_text if agent.last_result else ""


def screenshots_beside(transcript: Path | None) -> Path | None:
    """Where a demo keeps its screenshots: a folder named after its transcript."""
    return transcript.with_suffix(".screenshots") if transcript else None
