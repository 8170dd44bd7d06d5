"""One Chromium per process: sessions get contexts of their own in it, and a crash is survived by all.

Real Chromium through Playwright, a real local site on 127.0.0.1; the model
is scripted. Before the runtime, each session launched a Chromium of its own
(the engine was shared only within one event loop, and each session had one).
"""

from __future__ import annotations

import asyncio

import pytest

from harmony_agent import Agent, PolicyModel

pytest.importorskip("playwright")


@pytest.fixture(scope="module")
def site():
    from examples.local_site import serve_site

    with serve_site() as (url, _hits):
        yield url


def opener(page: str):
    def policy(messages):
        if messages[-1].author.role.value == "user":
            return f'<|channel|>analysis to=browser.open <|constrain|>json<|message|>{{"id": "{page}"}}<|call|>'
        return "<|channel|>final<|message|>read<|return|>"

    return policy


def browse_agent(site: str, page: str = "hours.html", **options) -> Agent:
    from harmony_agent.tools.browser import BrowserTool, NavigationPolicy
    from harmony_agent.tools.browser.engine import find_chromium

    if find_chromium() is None:
        pytest.skip("no Chromium here")
    policy = NavigationPolicy(allow_domains=["127.0.0.1"], allow_addresses=["127.0.0.1"])
    return Agent(PolicyModel(opener(f"{site}/{page}")), tools=[BrowserTool(policy=policy, **options)])


def opened(result) -> str:
    [text] = [e.content for e in result.events if e.type == "tool_result"]
    return text


def test_sessions_share_one_chromium_with_contexts_and_proxies_of_their_own_and_all_survive_a_crash(site):
    agent = browse_agent(site)

    async def main() -> None:
        sessions = [agent.session() for _ in range(4)]
        first = await asyncio.gather(*(s.arun("open") for s in sessions))
        assert all("09:00" in opened(r) for r in first), [opened(r)[:200] for r in first]
        browsers = [s.tools[0].session for s in sessions]
        engines = {id(b.engine) for b in browsers}
        assert len(engines) == 1, "each session launched a Chromium of its own"
        engine = browsers[0].engine
        launches = engine.launches
        assert len({id(b.context) for b in browsers}) == 4  # cookies, storage, downloads of its own
        assert len({b._proxy.url for b in browsers}) == 4  # and a policy proxy of its own
        assert len({str(b.downloads_dir) for b in browsers}) == 4

        async def crash() -> None:
            await (await engine.browser()).close()

        await sessions[0].perform(crash())  # Chromium goes away under every session at once
        again = await asyncio.gather(*(s.arun("open", previous=r) for s, r in zip(sessions, first)))
        for result in again:
            text = opened(result)
            assert "browser had stopped and was restarted" in text and "09:00" in text, text[:300]
        assert engine.launches == launches + 1  # relaunched once, for all of them
        for session in sessions:
            await session.aclose()

    asyncio.run(main())
    agent.close()


def test_a_browser_per_session_remains_available_for_comparison(site):
    agent = browse_agent(site, shared_browser=False)
    with agent.session() as one, agent.session() as two:
        assert "09:00" in opened(one.run("open")) and "09:00" in opened(two.run("open"))
        assert one.tools[0].session.engine is not two.tools[0].session.engine
    agent.close()
