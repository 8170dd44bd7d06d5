"""Web research on a local site: the browser tool, a search backend and a stand-in model, end to end.

    .venv/bin/python -m examples.research_demo            # add --model URL to use a real gpt-oss server

It serves ``examples/site`` on 127.0.0.1, lets the browser reach only that
address, indexes the site for ``browser.search``, and asks when the library
opens on Wednesdays. Screenshots of each view go to ``runs/research.screenshots``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from examples.demo_run import demo_arguments, screenshots_beside, stream_run
from examples.local_site import SITE, serve_site
from examples.research_policy import policy
from harmony_agent import Agent, PolicyModel
from harmony_agent.tools.browser import BrowserTool, LocalSearch, NavigationPolicy


async def research(model: object, base_url: str, transcript: Path | None = None) -> str:
    browser = BrowserTool(
        LocalSearch(folder=SITE, base_url=base_url),
        policy=NavigationPolicy(allow_domains=["127.0.0.1"], allow_addresses=["127.0.0.1"]),
        screenshots=screenshots_beside(transcript),
    )
    async with Agent(model, tools=[browser], reasoning="low", transcript=transcript) as agent:
        return await stream_run(agent, "When does the Harbor Town Library open on Wednesdays? Cite the page.")


def main() -> None:
    args = demo_arguments(__doc__.splitlines()[0], "runs/research.jsonl")
    with serve_site() as (base_url, _hits):
        asyncio.run(research(args.model or PolicyModel(policy), base_url, args.transcript))


if __name__ == "__main__":
    main()
