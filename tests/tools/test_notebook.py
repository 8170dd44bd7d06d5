"""Notebook cells as gpt-oss writes them, on real Docker and real bubblewrap.

gpt-oss was trained on a python tool described as a stateful Jupyter
notebook, so its cells use ``display()``, ``!cmd``, ``%magics``, top-level
``await``, a trailing ``;`` and ``Out``. The sandboxes run them on IPython
(forced here with ``kernel="ipython"``, so a sandbox without IPython fails
rather than falling back); the standard-library fallback keeps the habits it
can imitate, and the tool tells the model when it runs.
"""

from __future__ import annotations

import base64
import importlib.util
import re
import sys
import time

import pytest

from harmony_agent.sandboxes import LocalSandbox, SandboxError
from harmony_agent.tools import PythonTool, ToolCall
from helpers.available import KINDS, make

# An 8x8 red PNG, written out so the test needs no image library.
RED_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAEklEQVR4nGP4z8CAFWEXHbQSACj/P8Fu7N9hAAAAAElFTkSuQmCC"
)


@pytest.fixture(params=KINDS)
async def notebook(request):
    box = make(request.param, timeout=30, interrupt_grace=2.0, kernel="ipython")
    await box.start()
    assert box.kernel_name.startswith("IPython ") and box.notebook
    yield box
    await box.close()


@pytest.fixture(params=KINDS)
async def plain(request):
    box = make(request.param, timeout=30, kernel="standard")
    await box.start()
    assert box.kernel_name == "standard library" and not box.notebook
    yield box
    await box.close()


async def ok(box, code: str):
    result = await box.execute(code)
    assert result.status == "ok", (code, result)
    return result


async def test_display_shows_several_objects_in_order_with_printed_output(notebook):
    shown = await ok(notebook, "print('first')\ndisplay(1, 'two')\nprint('then')\ndisplay({'k': [3]})\n'last'")
    assert shown.stdout == "first\n1\n'two'\nthen\n{'k': [3]}\n"
    assert shown.result == "'last'"


async def test_a_dataframe_shows_as_its_text_table(notebook):
    shown = await ok(
        notebook,
        "import pandas as pd\ndf = pd.DataFrame({'city': ['Oslo', 'Lima'], 'temp': [3, 19]})\n"
        "display(df)\ndf.describe()",
    )
    assert re.search(r"city\s+temp\n0\s+Oslo\s+3\n1\s+Lima\s+19\n", shown.stdout), shown.stdout
    assert "<pandas" not in shown.stdout and "object at" not in shown.stdout
    assert re.search(r"^mean\s+11\.0+$", shown.result, re.MULTILINE), shown.result


async def test_displayed_images_and_figures_are_saved_and_reported(notebook):
    await notebook.upload(RED_PNG, "red.png")
    shown = await ok(
        notebook,
        "from IPython.display import Image\ndisplay(Image(filename='red.png'))\n"
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()",
    )
    assert shown.images == ("/mnt/data/display-1.png", "/mnt/data/figure-1.png")
    assert await notebook.download("display-1.png") == RED_PNG
    assert (await notebook.download("figure-1.png"))[:4] == b"\x89PNG"
    assert shown.stderr == ""  # plt.show() on the Agg backend warns about nothing
    last = await ok(notebook, "Image(data=open('red.png', 'rb').read())")  # an image as the cell's value
    assert last.images == ("/mnt/data/display-2.png",) and "/mnt/data/display-2.png" not in last.files
    assert (await ok(notebook, "%matplotlib inline")).stderr == ""  # what models write first; there is no GUI to hook
    inline = await ok(notebook, "plt.plot([3, 1]);")
    assert inline.images == ("/mnt/data/display-3.png",)
    assert (await notebook.download("display-3.png"))[:4] == b"\x89PNG"


async def test_out_underscores_and_a_semicolon_behave_as_in_a_notebook(notebook):
    await ok(notebook, "6 * 7")
    await ok(notebook, "'second'")
    hidden = await ok(notebook, "'hidden';  # a trailing semicolon shows nothing")
    assert hidden.result is None and hidden.stdout == ""
    recalled = await ok(notebook, "_, __, Out[max(Out)], len(Out)")
    assert recalled.result == "('second', 42, 'second', 2)"


async def test_shell_commands_run_inside_the_sandbox(notebook):
    await ok(notebook, "open('data.csv', 'w').write('a,b\\n')")
    listed = await ok(notebook, "!ls /mnt/data")
    assert "data.csv" in listed.stdout.split()
    who = await ok(notebook, "name = 'sandbox'\n!echo {name} $(id -u) $(hostname)")
    assert who.stdout.split()[0] == "sandbox" and who.stdout.split()[1] != "0"  # never root
    captured = await ok(notebook, "files = !ls /mnt/data\nfiles")
    assert "data.csv" in captured.result
    failed = await ok(notebook, "!ls /no/such/place\n_exit_code")
    assert failed.result != "0" and "No such file" in failed.stdout + failed.stderr


@pytest.mark.parametrize(
    "command", ["!pip install requests", "%pip install requests", "!python3 -m pip install -q numpy-extra"]
)
async def test_installing_packages_says_at_once_that_there_is_no_network(notebook, command):
    started = time.monotonic()
    answer = await notebook.execute(command, timeout=20)
    assert time.monotonic() - started < 5
    assert answer.status == "ok" and "no network access" in answer.stderr, answer


async def test_magics_timeit_pwd_and_writefile(notebook):
    timed = await ok(notebook, "%timeit -n 5 -r 2 sum(range(100))")
    assert re.search(r"per loop \(mean ± std\. dev\. of 2 runs, 5 loops each\)", timed.stdout), timed.stdout
    assert (await ok(notebook, "%pwd")).result == "'/mnt/data'"
    written = await ok(notebook, "%%writefile todo.txt\nbuy milk\ncall Ana\n")
    assert "Writing todo.txt" in written.stdout and written.files == ("/mnt/data/todo.txt",)
    assert await notebook.download("todo.txt") == b"buy milk\ncall Ana\n"


async def test_top_level_await(notebook):
    shown = await ok(
        notebook,
        "import asyncio\nasync def square(x):\n    await asyncio.sleep(0.01)\n    return x * x\n"
        "await asyncio.gather(*(square(i) for i in range(4)))",
    )
    assert shown.result == "[0, 1, 4, 9]"


async def test_tracebacks_are_ipythons_uncoloured_and_short(notebook):
    failed = await notebook.execute("import json\ndef load(text):\n    return json.loads(text)\nload('{')")
    text = failed.error.traceback
    assert failed.status == "error" and failed.error.ename == "JSONDecodeError"
    assert "\x1b[" not in text and not re.search(r"^-{20,}$", text, re.MULTILINE)  # no colour codes, no rule line
    assert text.startswith("JSONDecodeError Traceback (most recent call last)\n")
    assert re.search(r"Cell In ?\[\d+\], line 4", text) and "----> 4 load('{')" in text
    assert "json/decoder.py" in text and '"""' not in text  # a library frame keeps only the line that ran
    assert "interactiveshell" not in text and "harmony_kernel" not in text
    assert text.rstrip().endswith(
        "JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    )
    syntax = await notebook.execute("def broken(:\n    pass")
    assert syntax.error.ename == "SyntaxError" and "\x1b[" not in syntax.error.traceback


async def test_exit_raises_system_exit_and_the_session_survives(notebook):
    await ok(notebook, "kept = 1")
    ended = await notebook.execute("exit(3)")
    assert ended.status == "error" and ended.error.ename == "SystemExit" and ended.error.evalue == "3"
    assert (await ok(notebook, "kept")).result == "1"


async def test_a_shell_command_past_the_time_limit_is_interrupted_and_state_kept(notebook):
    await ok(notebook, "kept = 'yes'")
    started = time.monotonic()
    slow = await notebook.execute("!sleep 60", timeout=1)
    assert slow.status == "timeout" and not slow.state_lost and time.monotonic() - started < 10
    assert (await ok(notebook, "kept")).result == "'yes'"


async def test_the_standard_fallback_keeps_the_habits_it_can(plain):
    shown = await ok(plain, "print('a')\ndisplay(1, 'two')\n5;")
    assert shown.stdout == "a\n1\n'two'\n" and shown.result is None
    assert (await ok(plain, "import asyncio\nawait asyncio.sleep(0.01)\n'awaited'")).result == "'awaited'"
    assert (await ok(plain, "_")).result == "'awaited'"
    magic = await plain.execute("!ls")
    assert magic.status == "error" and magic.error.ename == "SyntaxError"


@pytest.mark.filterwarnings("ignore:LocalSandbox.isolation='unsandboxed'.:RuntimeWarning")
async def test_auto_falls_back_to_the_standard_kernel_where_ipython_is_missing(tmp_path):
    if importlib.util.find_spec("IPython") is not None:
        pytest.skip("this interpreter has IPython; the fallback is covered by kernel='standard' above")
    async with LocalSandbox(isolation="unsandboxed", python=sys.executable) as box:  # a Python without IPython
        assert box.kernel_name == "standard library" and box.kernel_fallback_reason == "IPython is not installed"
        assert "no !shell commands" in box.describe_kernel()
        assert (await box.execute("display(2); 3;")).stdout == "2\n"
    with pytest.raises(SandboxError, match="IPython"):
        async with LocalSandbox(isolation="unsandboxed", python=sys.executable, kernel="ipython"):
            pass


@pytest.mark.parametrize("kind", KINDS)
async def test_the_tool_tells_the_model_once_when_cells_are_not_a_notebook(kind):
    plain = PythonTool(sandbox=make(kind, kernel="standard"))
    try:
        first = await plain.process(ToolCall("python", "analysis", "1 + 1"))
        assert (
            first.text()
            == "2\n[python kernel: plain Python (the standard kernel was asked for): no !shell commands or %magics; "
            "display() prints, top-level await works]"
        )
        assert (await plain.process(ToolCall("python", "analysis", "2 + 2"))).text() == "4"
        assert first.metadata["kernel"] == "standard library"
    finally:
        await plain.aclose()
    notebook = PythonTool(sandbox=make(kind))
    try:
        line = await notebook.start()
        assert "kernel: IPython" in line
        first = await notebook.process(ToolCall("python", "analysis", "!echo hi"))
        assert first.text() == "hi" and first.metadata["kernel"].startswith("IPython")  # the promised notebook: no note
    finally:
        await notebook.aclose()


def test_an_unknown_kernel_is_refused():
    with pytest.raises(ValueError, match="kernel must be one of"):
        LocalSandbox(kernel="jupyter")


async def test_the_image_has_the_scientific_stack_and_no_compiler():
    async with make("docker", kernel="ipython") as box:
        stack = await ok(
            box,
            "import numpy, pandas, matplotlib, scipy.stats, scipy.optimize, sympy, PIL\n"
            "round(scipy.stats.norm.cdf(1.96), 4), str(sympy.integrate(sympy.Symbol('x') ** 2))",
        )
        assert stack.result == "(0.975, 'x**3/3')"
        compilers = await ok(box, "!command -v gcc g++ cc c++ ld || echo none")
        assert compilers.stdout.strip() == "none"  # purged from the offline build; not in python:3.12-slim either
