"""One Chromium per process: sessions get contexts of their own in it, and a crash is survived by all.

Real Chromium through Playwright, a real local site on 127.0.0.1; the model
is scripted. Before the runtime, each session launched a Chromium of its own
(the engine was shared only within one event loop, and each session had one).
"""

from __future__ import annotations

import asyncio

import pytest

from harmony_agent import Agent, PolicyModel
from harmony_agent.sandboxes.runtime import runtime

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


async def spare_of(engine):
    """The spare the engine is making (or made) for the next session, once it is ready (on the runtime)."""
    from harmony_agent.tools.browser.engine import VIEWPORT

    task = engine._spares[(VIEWPORT, False)]
    await asyncio.wait([task])
    return task.result()


def test_the_next_session_takes_a_ready_spare_context_that_is_fresh_and_allowed_only_its_own_policy(site):
    """While a session runs, the engine makes the next session's context and page; that spare allows nothing
    (no scheme at all) until a session takes it, and then has none of an earlier session's cookies or storage."""
    agent = browse_agent(site)

    async def main() -> None:
        first = agent.session()
        assert "09:00" in opened(await first.arun("open"))
        mine = first.tools[0].session
        await first.perform(mine.page.evaluate("() => { document.cookie = 'who=first'; localStorage.who = 'first'; }"))
        await first.aclose()

        second = agent.session()
        await second.start()  # Chromium runs: a context is made ready while the model would think
        spare = await second.perform(spare_of(mine.engine))
        assert spare is not mine and spare.context is not mine.context and spare.page.url == "about:blank"
        assert spare.policy.check(f"{site}/hours.html") is not None and spare._proxy.policy is spare.policy
        assert "09:00" in opened(await second.arun("open"))
        theirs = second.tools[0].session
        assert theirs is spare  # its context and page were ready before it asked
        policy = second.tools[0].policy
        assert theirs.policy is policy and theirs._proxy.policy is policy
        seen = await second.perform(theirs.page.evaluate("() => [document.cookie, localStorage.who ?? null]"))
        assert seen == ["", None]
        following = await second.perform(spare_of(theirs.engine))  # and the one after it is on its way
        await second.aclose()

        await runtime().run_async(theirs.engine.shutdown())  # a spare nobody took goes with Chromium: nothing left
        assert following.context is None and following._proxy is None and not following.downloads_dir.exists()

    asyncio.run(main())
    agent.close()


def test_a_spare_made_before_chromium_crashed_is_not_given_to_a_session(site):
    agent = browse_agent(site)

    async def main() -> None:
        one = agent.session()
        await one.arun("open")
        engine = one.tools[0].session.engine
        await agent.session().start()  # a session starting while Chromium runs has a spare made
        stale = await one.perform(spare_of(engine))

        async def crash() -> None:
            await (await engine.browser()).close()

        await one.perform(crash())
        await one.aclose()
        two = agent.session()
        text = opened(await two.arun("open"))
        assert "09:00" in text and "had stopped" not in text, text[:300]  # a fresh session, in the new Chromium
        assert two.tools[0].session is not stale and stale._proxy is None
        await two.aclose()

    asyncio.run(main())
    agent.close()
