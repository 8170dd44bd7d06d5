"""Files a run's python made: cited on the answer, shown and offered for download on the page, behind the API key.

Real pieces: the server on uvicorn on 127.0.0.1, the ``openai`` SDK, httpx and the page in headless
Chromium as clients, python (with matplotlib) in bubblewrap; the model is scripted. The files are
only those the session copied home into its output folder: a path a run names outside it, or a link
inside it, is never published.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import openai
import pytest
from test_server import ARTIFACTS, client, py, running

from harmony_agent import ScriptedModel
from harmony_agent.events import RunEndEvent, RunStartEvent, Usage
from harmony_agent.server import ServerConfig
from harmony_agent.server.conversations import PublishedFiles
from harmony_agent.server.protocol import ResponseBuilder, ResponsesRequest
from helpers.available import require
from helpers.completions import final

PLOT = """
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(3, 2))
ax.plot([1, 2, 3], [1, 4, 9])
fig.savefig("/mnt/data/plot.png")
plt.close(fig)
open("/mnt/data/table.csv", "w").write("x,y\\n1,1\\n2,4\\n3,9\\n")
print("saved")
"""
TOOLS = [{"type": "code_interpreter", "container": {"type": "auto"}}]
KEY = {"Authorization": "Bearer sesame"}


def _config(model) -> ServerConfig:
    from harmony_agent.tools import PythonTool

    require("bubblewrap")
    return ServerConfig(model, builtin_tools={"python": PythonTool(sandbox="bubblewrap")}, api_key="sesame")


def _made(tmp_path: Path, name: str) -> Path:
    """The file the session copied home (``runs/<run id>/NAME`` under the server's working folder)."""
    [found] = list((tmp_path / "runs").glob(f"*/{name}"))
    return found


def test_the_page_shows_the_plot_and_offers_every_file_for_download(tmp_path, monkeypatch):
    require("chromium")
    from playwright.sync_api import sync_playwright

    from harmony_agent.tools.browser.engine import find_chromium

    monkeypatch.chdir(tmp_path)  # the sessions' output folders go under runs/ here
    model = ScriptedModel([py(PLOT), final("The plot is saved.")])
    with running(_config(model)) as url, sync_playwright() as playwright:
        base = url.removesuffix("/v1")
        browser = playwright.chromium.launch(executable_path=find_chromium(), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800}, accept_downloads=True)
            page.goto(base + "/")
            page.wait_for_selector(".tool-choice")
            page.fill("#key", "sesame")
            page.fill("#input", "Plot y = x squared")
            page.press("#input", "Enter")
            page.wait_for_selector(".status:text-matches('completed')", timeout=60_000)
            image = page.locator(".files img")
            page.wait_for_function("() => document.querySelector('.files img')?.naturalWidth > 0", timeout=10_000)
            assert image.evaluate("img => img.naturalWidth") == 300  # the 3 x 2 inch figure at 100 dpi
            links = page.locator(".files a.file")
            assert sorted(links.all_inner_texts()) == ["Download plot.png", "Download table.csv"]
            csv = page.locator(".files a.file", has_text="table.csv")
            with page.expect_download() as info:
                csv.click()
            saved = tmp_path / "saved.csv"
            info.value.save_as(saved)
            assert saved.read_text() == "x,y\n1,1\n2,4\n3,9\n"
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "server-page-files.png"), full_page=True)
            href = page.locator(".files a.file", has_text="plot.png").get_attribute("href")
        finally:
            browser.close()
        assert href is not None and href.startswith("/files/")
        with httpx.Client(timeout=30) as http:
            assert http.get(base + href).status_code == 401
            reply = http.get(base + href, headers=KEY)
    assert reply.status_code == 200 and reply.content == _made(tmp_path, "plot.png").read_bytes()
    assert reply.content.startswith(b"\x89PNG")
    # Never run as a page of this server, whatever the model wrote.
    assert reply.headers["content-disposition"].startswith("attachment")
    assert reply.headers["content-security-policy"] == "sandbox"


def test_the_sdk_reads_the_files_as_citations_on_the_answer(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = ScriptedModel([py(PLOT), final("Saved."), py(PLOT), final("Saved again.")])
    with running(_config(model)) as url:
        sdk = client(url, key="sesame")
        response = sdk.responses.create(model="gpt-oss", input="Plot it", tools=TOOLS)
        [message] = [item for item in response.output if item.type == "message"]
        cited = message.content[0].annotations
        assert sorted(a.filename for a in cited) == ["plot.png", "table.csv"]
        assert all(a.type == "container_file_citation" and a.start_index == len("Saved.") for a in cited)
        with sdk.responses.stream(model="gpt-oss", input="Again", tools=TOOLS) as stream:
            kinds = [event.type for event in stream]
            streamed = stream.get_final_response()
        assert kinds.count("response.output_text.annotation.added") == 2
        [message] = [item for item in streamed.output if item.type == "message"]
        [csv] = [a for a in message.content[0].annotations if a.filename == "table.csv"]
        url_of = csv.model_extra["url"]
        with httpx.Client(timeout=30) as http:
            got = http.get(url.removesuffix("/v1") + url_of, headers=KEY)
        assert got.status_code == 200 and got.text == "x,y\n1,1\n2,4\n3,9\n"


def test_chat_completions_clients_get_the_files_as_url_citations(tmp_path, monkeypatch):
    """The ``openai`` SDK's Chat Completions, not streamed and streamed: the files come as ``url_citation``
    annotations (the only kind a chat message carries), each a ``/files/...`` link titled with the file's name."""
    monkeypatch.chdir(tmp_path)
    model = ScriptedModel([py(PLOT), final("Saved."), py(PLOT), final("Saved again.")])
    with running(_config(model)) as url:
        sdk = client(url, key="sesame")
        reply = sdk.chat.completions.create(model="gpt-oss", messages=[{"role": "user", "content": "Plot it"}])
        message = reply.choices[0].message
        assert message.content == "Saved."
        assert message.annotations is not None and {a.type for a in message.annotations} == {"url_citation"}
        cited = {a.url_citation.title: a.url_citation for a in message.annotations}
        assert sorted(cited) == ["plot.png", "table.csv"]
        assert all(
            c.start_index == c.end_index == len("Saved.") and c.url.startswith("/files/") for c in cited.values()
        )
        chunks = list(
            sdk.chat.completions.create(model="gpt-oss", messages=[{"role": "user", "content": "Again"}], stream=True)
        )
        deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
        assert "".join(delta.content or "" for delta in deltas) == "Saved again."
        streamed = [note for delta in deltas for note in (delta.model_extra or {}).get("annotations", [])]
        assert sorted(note["url_citation"]["title"] for note in streamed) == ["plot.png", "table.csv"]
        [csv] = [note["url_citation"] for note in streamed if note["url_citation"]["title"] == "table.csv"]
        assert csv["start_index"] == len("Saved again.")
        with httpx.Client(timeout=30) as http:
            got = http.get(url.removesuffix("/v1") + csv["url"], headers=KEY)
            refused = http.get(url.removesuffix("/v1") + csv["url"])
        assert got.status_code == 200 and got.text == "x,y\n1,1\n2,4\n3,9\n"
        assert refused.status_code == 401


def _builder(files: PublishedFiles) -> ResponseBuilder:
    return ResponseBuilder(
        response_id="resp_1",
        model="m",
        request=ResponsesRequest.parse({"input": "hi"}),
        client_functions=set(),
        publish=files.publish,
        publish_file=files.publish_inside,
    )


def test_only_plain_files_inside_the_output_folder_are_published(tmp_path):
    """A run that names a host file elsewhere, a ``..`` way out, or a link inside its folder publishes none of them."""
    from harmony_agent.events import TokenDeltaEvent

    folder = tmp_path / "runs" / "r1"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "ok.txt").write_text("fine")
    secret = tmp_path / "secret.txt"
    secret.write_text("host file")
    os.symlink(secret, folder / "link.txt")
    os.symlink(tmp_path, folder / "up")
    files = PublishedFiles()
    builder = _builder(files)
    builder.feed(RunStartEvent(task="hi", model="m", tools=[], output_dir=str(folder)))
    builder.feed(TokenDeltaEvent(text="Done.", channel="final", recipient=None))
    named = [
        str(folder / "sub" / "ok.txt"),
        str(secret),
        str(folder / ".." / "secret.txt"),
        str(folder / "link.txt"),
        str(folder / "up" / "secret.txt"),
        "/etc/passwd",
        "sub/ok.txt",
    ]
    events = builder.feed(RunEndEvent(stop_reason="final", steps=1, usage=Usage(), final_text="Done.", files=named))
    [added] = [e for e in events if e["type"] == "response.output_text.annotation.added"]
    assert added["annotation"]["filename"] == "sub/ok.txt"
    token = added["annotation"]["url"].removeprefix("/files/")
    assert files.get(token) == (folder / "sub" / "ok.txt").resolve()
    assert builder.response()["output"][0]["content"][0]["annotations"] == [added["annotation"]]
    # A file later swapped for a link is not served either.
    (folder / "sub" / "ok.txt").unlink()
    os.symlink(secret, folder / "sub" / "ok.txt")
    assert files.get(token) is None


def test_default_clients_read_a_cited_answer_and_send_it_back(tmp_path, monkeypatch):
    """openai-agents' Runner and LangChain's ChatOpenAI (Responses API) at their defaults: the cited answer
    is their answer, and the conversation, annotations and all, goes on in a second turn."""
    agents = pytest.importorskip("agents")
    pytest.importorskip("langchain_openai")
    import asyncio

    from langchain_core.messages import HumanMessage
    from langchain_openai import ChatOpenAI

    monkeypatch.chdir(tmp_path)
    model = ScriptedModel([py(PLOT), final("Saved."), final("Again."), py(PLOT), final("Saved."), final("Again.")])
    with running(_config(model)) as url:

        async def main():
            sdk = openai.AsyncOpenAI(base_url=url, api_key="sesame", max_retries=0)
            agent = agents.Agent(
                name="plots",
                tools=[
                    agents.CodeInterpreterTool(tool_config={"type": "code_interpreter", "container": {"type": "auto"}})
                ],
                model=agents.OpenAIResponsesModel(model="gpt-oss", openai_client=sdk),
            )
            config = agents.RunConfig(tracing_disabled=True)
            first = await agents.Runner.run(agent, "Plot it", run_config=config)
            assert first.final_output == "Saved."
            [message] = [item for item in first.raw_responses[-1].output if item.type == "message"]
            assert sorted(a.filename for a in message.content[0].annotations) == ["plot.png", "table.csv"]
            follow = first.to_input_list() + [{"role": "user", "content": "Once more"}]
            streamed = agents.Runner.run_streamed(agent, follow, run_config=config)
            [_ async for _ in streamed.stream_events()]
            assert streamed.final_output == "Again."

        asyncio.run(main())
        llm = ChatOpenAI(model="gpt-oss", base_url=url, api_key="sesame", use_responses_api=True, max_retries=0)
        bound = llm.bind_tools([TOOLS[0]])
        messages = [HumanMessage("Plot it")]
        reply = bound.invoke(messages)
        assert reply.text == "Saved."
        [text] = [block for block in reply.content if block.get("type") == "text"]
        cited = {a["filename"]: a["url"] for a in text["annotations"]}  # kept in the message LangChain sends back
        assert sorted(cited) == ["plot.png", "table.csv"] and all(u.startswith("/files/") for u in cited.values())
        assert bound.invoke([*messages, reply, HumanMessage("Once more")]).text == "Again."
