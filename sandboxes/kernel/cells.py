"""Inside the sandbox: how a cell's code runs, on IPython where it is importable, else the standard library.

``IPythonCells`` uses IPython's own machinery (``InteractiveShell.run_cell``)
so notebook code works as the model expects: ``display()``, ``!cmd``,
``%magics``, top-level ``await``, a trailing ``;``, ``Out``.
``StandardCells`` stands in where IPython is missing or
``HARMONY_KERNEL_MODE=standard`` asks for it. Both return
(status, text of the last value, error) and hand what ``display()`` shows to
the kernel (``show``/``save_images``).
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
import traceback
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # asyncio is imported only when a cell awaits at top level
    import asyncio

KERNEL_MODES = ("auto", "ipython", "standard")
IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/svg+xml": "svg"}
INSTALL_COMMAND = re.compile(r"(^|[\s;&|/])(pip[\d.]*|python[\d.]*\s+-m\s+pip|conda|mamba|apt(-get)?)\s+install\b")
NO_INSTALL = (
    "{command}: nothing can be installed, because this sandbox has no network access. "
    "Use the packages already installed (numpy, pandas, matplotlib, ...); help('modules') lists them."
)


class Kernel(Protocol):
    """What the cells need of the kernel: somewhere for ``display()`` to send what it shows."""

    def show(self, data: dict) -> None: ...

    def save_images(self, data: dict) -> bool: ...


class StandardCells:
    """Cells run with the standard library alone: the fallback where IPython is missing.

    It keeps the notebook habits that cost nothing to imitate: the last
    expression's value (hidden by a trailing ``;``) as ``_``, a ``display()``
    that prints, and top-level ``await``. Shell commands and magics need IPython.
    """

    name = "standard library"

    def __init__(self, kernel: Kernel) -> None:
        self.namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__, "display": self.display}
        self.loop: asyncio.AbstractEventLoop | None = None

    @staticmethod
    def display(*objects, **_options) -> None:
        for value in objects:
            print(repr(value))

    def run(self, code: str) -> tuple[str, str | None, dict | None]:
        """Run a cell; returns (status, text of the last value or None, error or None)."""
        try:
            return "ok", self._run(code), None
        except KeyboardInterrupt as exc:
            return "interrupted", None, error_of(exc, self._traceback(exc))
        except BaseException as exc:  # SystemExit too: the kernel survives the user's exit()
            return "error", None, error_of(exc, self._traceback(exc))

    def _run(self, code: str) -> str | None:
        tree = ast.parse(code, "<cell>", "exec")
        last = None
        final = tree.body[-1] if tree.body else None
        if isinstance(final, ast.Expr) and not self._hidden(code):
            tree.body.pop()
            last = ast.Expression(final.value)
        self._eval(compile(tree, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT))
        if last is None:
            return None
        value = self._eval(compile(last, "<cell>", "eval", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT))
        if value is None:
            return None
        self.namespace["_"] = value
        return repr(value)

    def _eval(self, code):
        value = eval(code, self.namespace)
        if code.co_flags & 0x80:  # CO_COROUTINE: the cell awaits at top level
            import asyncio

            if self.loop is None:
                self.loop = asyncio.new_event_loop()
            value = self.loop.run_until_complete(value)
        return value

    @staticmethod
    def _hidden(code: str) -> bool:
        """Whether the cell ends with ``;`` (a notebook then shows no value)."""
        try:
            tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
        except (tokenize.TokenError, SyntaxError):
            return False
        skip = {tokenize.ENDMARKER, tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.DEDENT, tokenize.INDENT}
        last = next((t for t in reversed(tokens) if t.type not in skip), None)
        return last is not None and last.type == tokenize.OP and last.string == ";"

    @staticmethod
    def _traceback(exc: BaseException) -> str:
        # Hide the kernel's own frames: the user should see their cell and what it called.
        frames = list(traceback.extract_tb(exc.__traceback__))
        cell = next((i for i, f in enumerate(frames) if f.filename == "<cell>"), len(frames))
        frames = frames[cell:]
        summary = "".join(traceback.format_exception_only(type(exc), exc))
        if not frames:
            return summary
        return "Traceback (most recent call last):\n" + "".join(traceback.format_list(frames)) + summary


def error_of(exc: BaseException, text: str) -> dict:
    return {"ename": type(exc).__name__, "evalue": str(exc), "traceback": text}


def shorten_traceback(parts: list[str]) -> str:
    """IPython's context traceback without the rule line, and with library frames cut to the line that ran.

    Cells keep their context lines (the model wrote them); a frame in a
    library keeps its header and the ``-->`` line, which is what the model
    needs to see where its call went wrong.
    """
    kept = []
    for part in parts:
        lines = [line for line in part.splitlines() if set(line) != {"-"}]  # the rule line above the header
        if lines and re.match(r"\S+\s{2,}Traceback", lines[0]):
            lines[0] = re.sub(r"\s{2,}", " ", lines[0])  # "ValueError Traceback (most recent call last)"
        if lines and lines[0].startswith("File ") and not lines[0].startswith("File <"):
            lines = [lines[0], *(line for line in lines[1:] if line.startswith("-->"))]
        kept.append("\n".join(lines))
    return "\n\n".join(p.strip("\n") for p in kept if p.strip()) + "\n"


class IPythonCells:
    """Cells run by IPython's InteractiveShell, with its output routed into the kernel's reply.

    The last value goes to the reply's ``result`` (IPython's text/plain, so a
    DataFrame is its table), ``display()`` prints text in order with the cell's
    other output and saves images to the data folder, tracebacks come back
    uncoloured in the error, and ``!pip install`` says at once that there is
    no network rather than retrying until the time limit.
    """

    def __init__(self, kernel: Kernel) -> None:
        from IPython import __version__
        from IPython.core.displayhook import DisplayHook
        from IPython.core.displaypub import DisplayPublisher
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets import Type
        from traitlets.config import Config

        self.name = f"IPython {__version__}"
        self.kernel = kernel
        cells = self
        self.shown: dict | None = None
        self.traceback = ""

        class Hook(DisplayHook):
            def write_output_prompt(self) -> None:
                pass

            def write_format_data(self, format_dict, md_dict=None) -> None:
                cells.shown = format_dict

            def finish_displayhook(self) -> None:
                pass

        class Publisher(DisplayPublisher):
            def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **_kw) -> None:
                kernel.show(data)

            def clear_output(self, wait=False) -> None:
                pass

        class Shell(InteractiveShell):
            displayhook_class = Type(Hook)
            display_pub_class = Type(Publisher)

            def _showtraceback(self, etype, evalue, stb) -> None:
                cells.traceback = shorten_traceback(stb if isinstance(stb, list) else [stb])

            def enable_gui(self, gui=None) -> None:
                pass  # no event loop to hook: figures reach the data folder through display()

            def enable_matplotlib(self, gui=None):
                # `%matplotlib` (a GUI backend) would fail headless; draw as a notebook does, inline.
                return super().enable_matplotlib(gui if gui in ("inline", "agg") else "inline")

            def system(self, cmd: str) -> None:
                if INSTALL_COMMAND.search(cmd):
                    print(NO_INSTALL.format(command=cmd.strip()), file=sys.stderr)
                    self.user_ns["_exit_code"] = 1
                    return
                self.system_raw(cmd)  # plain subprocess on the captured fds; the piped variant needs a terminal

        config = Config()
        config.HistoryManager.enabled = False  # no SQLite file, no saving thread
        config.InteractiveShell.colors = "NoColor"
        config.InteractiveShell.xmode = "Context"
        config.DisplayFormatter.active_types = ["text/plain", *IMAGE_TYPES]
        self.shell = Shell.instance(config=config)
        for name in ("exit", "quit"):  # IPython's exiter would end nothing here: raise SystemExit as a script would
            self.shell.user_ns[name] = self.shell.user_ns_hidden[name] = sys.exit

    def run(self, code: str) -> tuple[str, str | None, dict | None]:
        self.shown, self.traceback = None, ""
        outcome = self.shell.run_cell(code, store_history=True)
        result = None
        if self.shown is not None and outcome.result is not None:
            result = self.shown.get("text/plain")
            self.kernel.save_images(self.shown)
        exc = outcome.error_before_exec or outcome.error_in_exec
        if exc is None:
            return "ok", result, None
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "error"
        text = self.traceback or "".join(traceback.format_exception_only(type(exc), exc))
        return status, result, error_of(exc, text)


def choose_cells(kernel: Kernel, mode: str):
    """IPython's cells where it can run (unless ``standard`` is asked for), else the standard library's; and why."""
    if mode != "standard":
        try:
            return IPythonCells(kernel), ""
        except Exception as exc:  # not installed, or an IPython that cannot start here
            if mode == "ipython":
                raise
            reason = "IPython is not installed" if isinstance(exc, ImportError) else f"IPython failed to start: {exc}"
            return StandardCells(kernel), reason
    return StandardCells(kernel), "the standard kernel was asked for"
