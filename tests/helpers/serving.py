"""``serve``'s app run by uvicorn on the runtime (as ``serve`` does), from a thread, on 127.0.0.1, for tests that talk to it with real clients."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from helpers.processes import free_port


@contextmanager
def running(config, **options) -> Iterator[str]:
    """Serve ``create_app(config)`` (or ``config``, an app already made) on a free port; yields the base URL
    (``http://127.0.0.1:PORT/v1``)."""
    import uvicorn

    from harmony_agent.server import create_app
    from harmony_agent.server.app import run_on_runtime

    port = free_port()
    if hasattr(config, "state"):  # an app already made, whose state the test inspects
        app = config
    else:
        app = create_app(config, **options) if options else create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=run_on_runtime, args=(server,), daemon=True)  # where ``serve`` runs it
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(20)


def client(base_url: str, key: str = "unused"):
    import openai

    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)


def weather_agent(base_url: str, api: str):
    """An openai-agents ``Agent`` as its users write one, with a ``get_weather`` function tool ("3 degrees in
    CITY"), on this server through ``api`` ("chat" or "responses"); and the ``RunConfig`` with tracing off.
    Call it inside the loop that runs the agent: its ``AsyncOpenAI`` client belongs to that loop."""
    import agents
    import openai

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        return f"3 degrees in {city}"

    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    model_class = agents.OpenAIChatCompletionsModel if api == "chat" else agents.OpenAIResponsesModel
    model = model_class(model="gpt-oss", openai_client=client)
    agent = agents.Agent(name="weather", instructions="Answer briefly.", tools=[get_weather], model=model)
    return agent, agents.RunConfig(tracing_disabled=True)


async def two_weather_turns(agent, config) -> None:
    """The tool round trip, then a second turn from ``to_input_list()``, as the scripted weather policy answers."""
    import agents

    first = await agents.Runner.run(agent, "What is the weather in Oslo?", run_config=config)
    assert first.final_output == "Weather: 3 degrees in Oslo."
    follow = first.to_input_list() + [{"role": "user", "content": "And what did I ask?"}]
    second = await agents.Runner.run(agent, follow, run_config=config)
    assert second.final_output == "This is your turn 2; before you said: What is the weather in Oslo?"
