"""Every Python block in the README and the docs runs as written.

No weights exist here, so only the model changes: a block names a real server
(``http://localhost:8000/v1``, or ``serve`` at ``http://127.0.0.1:8080/v1``), and the
comment line above it says which stand-in plays gpt-oss there:

    <!-- docs-test: model=NAME needs=bubblewrap -->   the stand-in MODELS[NAME], then CHECKS[NAME]
    <!-- docs-test: serve=NAME needs=... -->          a real Responses server on 127.0.0.1 serving it
    <!-- docs-test: needs=docker -->                  the block runs untouched

The tools, sandboxes, browser and display are the real ones, and each named
stand-in's check asserts what the block printed or left behind.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harmony_agent import Model, PolicyModel, PythonTool, ScriptedModel
from harmony_agent.server import ServerConfig
from helpers import ROOT
from helpers.available import require
from helpers.completions import call, final

MODEL_URL = '"http://localhost:8000/v1"'
SERVE_URL = '"http://127.0.0.1:8080/v1"'
DIRECTIVE = re.compile(r"<!-- docs-test: (.*?) -->\n```python\n(.*?)```", re.DOTALL)
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@dataclass
class Block:
    page: Path
    line: int
    code: str
    options: dict[str, str]

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in DIRECTIVE.finditer(text):
            options = dict(part.split("=", 1) for part in match.group(1).split())
            found.append(Block(page, text[: match.start(2)].count("\n") + 1, match.group(2), options))
    return found


def test_every_python_block_has_a_directive():
    """A block without a directive would go untested: every one must say how it runs."""
    for page in PAGES:
        text = page.read_text()
        total = text.count("```python\n")
        directed = len(DIRECTIVE.findall(text))
        assert total == directed, (
            f"{page.relative_to(ROOT)}: {total - directed} python block(s) without a docs-test line"
        )


def _policy(module: str) -> Callable[[], Model]:
    def make() -> Model:
        policy = __import__(module, fromlist=["policy"]).policy
        return PolicyModel(policy)

    return make


def _fibonacci() -> Model:
    code = "a, b = 0, 1\nfor _ in range(20):\n    a, b = b, a + b\na"
    return ScriptedModel(
        [
            f"<|channel|>analysis to=python code<|message|>{code}<|call|>",
            final("The 20th Fibonacci number is 6765."),
        ]
    )


def _weather_python() -> Model:
    return ScriptedModel(
        [
            call("get_weather", '{"city": "Paris"}'),
            "<|channel|>analysis to=python code<|message|>paris = 18<|call|>",
            final("18 °C in Paris."),
            "<|channel|>analysis to=python code<|message|>print(paris * 9 / 5 + 32)<|call|>",
            final("64.4 °F."),
        ]
    )


def _python_powers() -> Model:
    return ScriptedModel(
        [
            "<|channel|>analysis to=python code<|message|>x = 2**100\nx<|call|>",
            final("2**100 = 1267650600228229401496703205376."),
            "<|channel|>analysis to=python code<|message|>x * 2<|call|>",
            final("2**101 = 2535301200456458802993406410752."),
            final("Hello."),  # the page's Chat Completions call
        ]
    )


def _mcp_demo() -> Model:
    return ScriptedModel.from_file(ROOT / "examples" / "mcp_demo.yaml")


MODELS: dict[str, Callable[[], Model]] = {
    "fibonacci": _fibonacci,
    "weather-python": _weather_python,
    "compute": _policy("examples.compute_policy"),
    "research": _policy("examples.research_policy"),
    "greeter": _policy("examples.desktop.greeter_policy"),
    "mcp-demo": _mcp_demo,
    "python-powers": _python_powers,
}


def _tool_outputs(result: Any) -> list[str]:
    return [event.content for event in result.events if event.type == "tool_result"]


def _check_weather(namespace: dict[str, Any], printed: str) -> None:
    result, follow_up = namespace["result"], namespace["follow_up"]
    assert result.final_text == "18 °C in Paris." and result.error is None
    assert _tool_outputs(follow_up) == ["64.4"]  # python kept `paris` from the first turn
    assert follow_up.final_text == "64.4 °F."


def _check_fibonacci(namespace: dict[str, Any], printed: str) -> None:
    assert _tool_outputs(namespace["result"]) == ["6765"]  # python computed it
    _assert_in("6765", printed)


def _check_python_powers(namespace: dict[str, Any], printed: str) -> None:
    _assert_in("1267650600228229401496703205376", printed)
    assert namespace["more"].output_text == "2**101 = 2535301200456458802993406410752."  # python kept x
    if "chat" in namespace:
        assert namespace["chat"].choices[0].message.content == "Hello."


CHECKS: dict[str, Callable[[dict[str, Any], str], None]] = {
    "fibonacci": _check_fibonacci,
    "weather-python": _check_weather,
    "compute": lambda namespace, printed: _assert_in(
        "The mean is 13.7 and the sample standard deviation is 1.273", printed
    ),
    "research": lambda namespace, printed: _assert_in("On Wednesday the library opens at", printed),
    "greeter": lambda namespace, printed: _assert_in("Hello, Zoë Ørsted!", printed),
    "mcp-demo": lambda namespace, printed: _assert_in("25 °C", printed),
    "python-powers": _check_python_powers,
}


def _assert_in(part: Any, whole: Any) -> None:
    assert part in whole, f"{part!r} not in {whole!r}"


@pytest.mark.slow
@pytest.mark.parametrize("block", blocks(), ids=lambda block: block.id)
def test_python_block_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for kind in filter(None, block.options.get("needs", "").split(",")):
        require(kind)
    monkeypatch.chdir(ROOT)  # blocks name examples/ as a reader in a checkout would
    code = block.code
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    with contextlib.ExitStack() as stack:
        if "model" in block.options:
            name = block.options["model"]
            assert MODEL_URL in code, f"{block.id}: model={name} but the block names no {MODEL_URL}"
            namespace["DOCS_MODEL"] = MODELS[name]()
            code = code.replace(MODEL_URL, "DOCS_MODEL")
        elif "serve" in block.options:
            from helpers.serving import running

            name = block.options["serve"]
            assert SERVE_URL in code, f"{block.id}: serve={name} but the block names no {SERVE_URL}"
            config = ServerConfig(MODELS[name](), builtin_tools={"python": PythonTool(sandbox="bubblewrap")})
            code = code.replace(SERVE_URL, repr(stack.enter_context(running(config))))
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"{block.page}:{block.line}", "exec"), namespace)
    name = block.options.get("model") or block.options.get("serve")
    if name:
        CHECKS[name](namespace, printed.getvalue())
    assert os.getcwd() == str(ROOT)
