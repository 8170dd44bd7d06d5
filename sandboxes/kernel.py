"""The kernel that runs inside a sandbox: a long-lived Python process with notebook semantics.

Standard library only, because it runs in whatever image or rootfs the
sandbox offers; the host sends this file's source in at every start
(``python3 -c``), so an image never holds a stale copy. It speaks one JSON
object per line: a request on stdin, a response on the protocol stream (the
original stdout, kept aside). User code's stdout and stderr go to per-call
capture files at the file-descriptor level, so output from C extensions and
subprocesses is captured too and can never corrupt the protocol.

Requests:  {"id": "1", "op": "execute", "code": "...", "max_output": 20000}
           {"id": "2", "op": "upload", "path": "in.csv", "data": "<base64>"}
           {"id": "3", "op": "download", "path": "out.png"}
           {"op": "interrupt"}    (no reply: interrupts the running execute)
           {"id": "4", "op": "ping"} / {"id": "5", "op": "shutdown"}
Responses: {"id": "1", "status": "ok" | "error" | "interrupted", "stdout": "...",
            "stderr": "...", "result": "repr of the last expression" | null,
            "error": {"ename", "evalue", "traceback"} | null,
            "files": [...], "images": [...], "duration_s": 0.01}

A reader thread takes requests while code runs, so an interrupt travels the
same channel as everything else and needs no way into the sandbox's process
table: the thread sends SIGINT to its own process, which raises
KeyboardInterrupt in the running code. When that fails (C code holding the
GIL), the host's grace period ends and it restarts the sandbox's processes.

Cells run on IPython's own machinery (``InteractiveShell.run_cell``) when
IPython is importable in the sandbox, so notebook code works as the model
expects: ``display()``, ``!cmd``, ``%magics``, top-level ``await``, a
trailing ``;``, ``Out``. Where IPython is missing (or
``HARMONY_KERNEL_MODE=standard`` asks for it) a standard-library runner
stands in; the ping reply names the one in use.

Run with the argument ``init`` it is instead a container's PID 1: it reaps
zombies, and on SIGUSR1 kills every other process in the sandbox, which works
even when a fork bomb has used up the process limit.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
import tokenize
import traceback
import warnings

DATA_DIR = os.environ.get("HARMONY_KERNEL_DATA", "/mnt/data")
DEFAULT_MAX_OUTPUT = 20_000
MAX_TRANSFER_BYTES = 256 * 1024 * 1024
MAX_FILES_LISTED = 50  # a cell that writes thousands of files gets a count, not a page of names
KERNEL_PID = os.getpid()
SIGINT_ONLY = {signal.SIGINT}
KERNEL_MODES = ("auto", "ipython", "standard")
IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/svg+xml": "svg"}
INSTALL_COMMAND = re.compile(r"(^|[\s;&|/])(pip[\d.]*|python[\d.]*\s+-m\s+pip|conda|mamba|apt(-get)?)\s+install\b")
NO_INSTALL = ("{command}: nothing can be installed, because this sandbox has no network access. "
              "Use the packages already installed (numpy, pandas, matplotlib, ...); help('modules') lists them.")


def truncate(text: str, limit: int) -> tuple[str, int]:
    """Keep the head and the tail of ``text`` within ``limit`` characters; return (text, characters cut)."""
    if limit <= 0 or len(text) <= limit:
        return text, 0
    head = limit // 2
    tail = limit - head
    cut = len(text) - limit
    return f"{text[:head]}\n[... {cut} characters cut ...]\n{text[-tail:]}", cut


def read_capture(file, limit: int) -> tuple[str, int]:
    """Read a capture file without loading more than the head and tail that will be kept."""
    size = file.seek(0, os.SEEK_END)
    budget = max(limit, 0) * 4 + 16  # up to 4 bytes a character
    if limit <= 0 or size <= budget:
        file.seek(0)
        return truncate(file.read().decode("utf-8", "replace"), limit)
    file.seek(0)
    head = file.read(budget // 2).decode("utf-8", "replace")
    file.seek(size - budget // 2)
    tail = file.read().decode("utf-8", "replace")
    kept_head, kept_tail = head[: limit // 2], tail[-(limit - limit // 2) :]
    cut_bytes = size - len(kept_head.encode()) - len(kept_tail.encode())
    return f"{kept_head}\n[... about {cut_bytes} bytes cut ...]\n{kept_tail}", cut_bytes


def oom_kills() -> int | None:
    """How many processes the sandbox's memory cgroup has killed so far (cgroup v2, then v1); None where unseen."""
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path) as file:
                for line in file:
                    if line.startswith("oom_kill "):
                        return int(line.split()[1])
        except (OSError, ValueError):
            continue
    return None


def snapshot(folder: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            try:
                found[path] = os.stat(path).st_mtime
            except OSError:
                pass
    return found


def save_image(data, extension: str, name: str) -> str:
    """Write displayed image data (base64 text or raw bytes; SVG as text) to the data folder; returns its path."""
    if isinstance(data, str):
        data = data.encode() if extension == "svg" else base64.b64decode(data)
    path = os.path.join(DATA_DIR, f"{name}.{extension}")
    with open(path, "wb") as file:
        file.write(data)
    return path


class StandardCells:
    """Cells run with the standard library alone: the fallback where IPython is missing.

    It keeps the notebook habits that cost nothing to imitate: the last
    expression's value (hidden by a trailing ``;``) as ``_``, a ``display()``
    that prints, and top-level ``await``. Shell commands and magics need IPython.
    """

    name = "standard library"

    def __init__(self, kernel: "Kernel") -> None:
        self.namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__, "display": self.display}
        self.loop = None

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
        if tree.body and isinstance(tree.body[-1], ast.Expr) and not self._hidden(code):
            last = ast.Expression(tree.body.pop().value)
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

    def __init__(self, kernel: "Kernel") -> None:
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


def choose_cells(kernel: "Kernel", mode: str):
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


class Kernel:
    def __init__(self, protocol, mode: str = "auto") -> None:
        self.protocol = protocol
        self.figure_count = 0
        self.image_count = 0
        self.images: list[str] = []
        self.cells, self.fallback_reason = choose_cells(self, mode)

    def respond(self, payload: dict) -> None:
        self.protocol.write(json.dumps(payload) + "\n")
        self.protocol.flush()

    def show(self, data: dict) -> None:
        """What display() of one object shows: an image is saved to the data folder, anything else printed as text."""
        if not self.save_images(data) and "text/plain" in data:
            print(data["text/plain"])

    def save_images(self, data: dict) -> bool:
        for mime, extension in IMAGE_TYPES.items():
            if mime in data:
                self.image_count += 1
                try:
                    self.images.append(save_image(data[mime], extension, f"display-{self.image_count}"))
                except (OSError, ValueError) as exc:
                    print(f"could not save the displayed image: {exc}", file=sys.stderr)
                return True
        return False

    def execute(self, code: str, max_output: int) -> dict:
        before = snapshot(DATA_DIR)
        out = tempfile.TemporaryFile()
        err = tempfile.TemporaryFile()
        saved = os.dup(1), os.dup(2)
        status, result, error = "ok", None, None
        self.images = []
        started = time.perf_counter()
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            status, result, error = self.cells.run(code)
        except KeyboardInterrupt as exc:  # landed in the runner's own code, outside the cell
            status, error = "interrupted", error_of(exc, "")
        except BaseException as exc:
            status, error = "error", error_of(exc, "".join(traceback.format_exception_only(type(exc), exc)))
        finally:
            if os.getpid() != KERNEL_PID:
                os._exit(0)  # a child the user's code forked must not return into the kernel and answer requests
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except Exception:
                pass
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        images = self.images + self._save_figures()
        stdout, _ = read_capture(out, max_output)
        stderr, _ = read_capture(err, max_output // 4 if max_output > 0 else 0)
        out.close()
        err.close()
        if result is not None:
            result, _ = truncate(result, max_output)
        after = snapshot(DATA_DIR)
        files = sorted(p for p, mtime in after.items() if before.get(p) != mtime and p not in images)
        return {
            "status": status, "stdout": stdout, "stderr": stderr, "result": result, "error": error,
            "files": files[:MAX_FILES_LISTED], "files_omitted": max(0, len(files) - MAX_FILES_LISTED),
            "images": images, "duration_s": round(time.perf_counter() - started, 6), "oom_kills": oom_kills(),
        }

    def _save_figures(self) -> list[str]:
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return []
        saved = []
        for number in plt.get_fignums():
            self.figure_count += 1
            path = os.path.join(DATA_DIR, f"figure-{self.figure_count}.png")
            try:
                plt.figure(number).savefig(path)
                saved.append(path)
            except Exception as exc:
                print(f"could not save figure {number}: {exc}", file=sys.stderr)
        plt.close("all")
        return saved

    # -- serving -------------------------------------------------------------

    def serve(self, requests) -> None:
        """Main thread: run requests one at a time; a reader thread feeds them and handles interrupts."""
        import queue

        inbox: queue.Queue = queue.Queue()
        busy = threading.Lock()  # held while user code may run; interrupts are sent only then
        state = {"running": False}

        def read() -> None:
            signal.pthread_sigmask(signal.SIG_BLOCK, SIGINT_ONLY)  # SIGINT is for the main thread
            for line in requests:
                if not line.strip():
                    continue
                try:
                    request = json.loads(line)
                    op = request.get("op", "execute")
                except (json.JSONDecodeError, AttributeError) as exc:
                    inbox.put({"op": "_bad", "error": str(exc)})
                    continue
                if op == "interrupt":
                    with busy:
                        if state["running"]:
                            os.kill(KERNEL_PID, signal.SIGINT)
                    for _ in range(3):  # a copy forked while /proc was being listed can escape one sweep
                        if not kill_forked_copies():
                            break
                    continue
                inbox.put(request)
            inbox.put({"op": "shutdown", "id": None, "_eof": True})

        threading.Thread(target=read, name="kernel-reader", daemon=True).start()
        while True:
            request = inbox.get()
            op, rid = request.get("op", "execute"), request.get("id")
            if op == "shutdown":
                if not request.get("_eof"):
                    self.respond({"id": rid, "status": "ok"})
                return
            if op == "_bad":
                self.respond(self._protocol_error(None, request["error"]))
            elif op == "ping":
                self.respond({"id": rid, "status": "ok", "pid": os.getpid(), "kernel": self.cells.name,
                              "fallback_reason": self.fallback_reason, "oom_kills": oom_kills()})
            elif op == "execute":
                reply = self._interruptible(busy, state, request)
                reply["id"] = rid
                self.respond(reply)
            elif op in ("upload", "download"):
                self.respond({"id": rid, **self._transfer(op, request)})
            else:
                self.respond(self._protocol_error(rid, f"unknown op {op!r}"))

    def _interruptible(self, busy: threading.Lock, state: dict, request: dict) -> dict:
        """Run an execute request with SIGINT deliverable only while it runs."""
        if signal.SIGINT in signal.sigpending():  # one sent while idle is stale
            signal.sigwait(SIGINT_ONLY)
        with busy:
            state["running"] = True
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGINT_ONLY)
        try:
            return self.execute(str(request.get("code", "")), int(request.get("max_output", DEFAULT_MAX_OUTPUT)))
        except KeyboardInterrupt:  # landed between the user's code and the reply
            return {"status": "interrupted", "stdout": "", "stderr": "", "result": None, "files": [], "images": [],
                    "error": {"ename": "KeyboardInterrupt", "evalue": "execution interrupted", "traceback": ""}, "duration_s": 0}
        finally:
            signal.pthread_sigmask(signal.SIG_BLOCK, SIGINT_ONLY)
            with busy:
                state["running"] = False
            if signal.SIGINT in signal.sigpending():  # a late interrupt must not hit the next request
                signal.sigwait(SIGINT_ONLY)

    @staticmethod
    def _protocol_error(rid, message: str) -> dict:
        return {"id": rid, "status": "protocol_error", "error": {"ename": "ProtocolError", "evalue": message, "traceback": ""}}

    @staticmethod
    def _transfer(op: str, request: dict) -> dict:
        path = os.path.join(DATA_DIR, str(request.get("path", "")))
        try:
            if op == "upload":
                data = base64.b64decode(str(request.get("data", "")), validate=True)
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                with open(path, "wb") as file:
                    file.write(data)
                return {"status": "ok", "path": os.path.abspath(path), "size": len(data)}
            size = os.path.getsize(path)
            if size > MAX_TRANSFER_BYTES:
                raise OSError(f"{path} is {size} bytes, over the {MAX_TRANSFER_BYTES}-byte transfer limit")
            with open(path, "rb") as file:
                data = file.read()
            return {"status": "ok", "path": os.path.abspath(path), "size": len(data), "data": base64.b64encode(data).decode()}
        except (OSError, ValueError) as exc:
            return {"status": "error", "error": {"ename": type(exc).__name__, "evalue": str(exc), "traceback": ""}}


def _forked_copies(own_cmdline: bytes) -> list[int]:
    """Processes that are forks of this kernel (same command line, never exec'd), other than the kernel itself."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == KERNEL_PID:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                if file.read() == own_cmdline:
                    found.append(int(entry))
        except OSError:
            pass
    return found


def kill_forked_copies(time_limit: float = 5.0) -> int:
    """On interrupt, kill the kernel's forked copies (multiprocessing workers, fork bombs).

    A fork bomb that catches its errors never returns to the kernel, so the
    interrupt alone would leave it spinning at the process limit. Programs the
    code started with exec (servers, shells) have other command lines and are
    left alone, as a notebook's interrupt would. Copies are stopped first,
    round after round, because a stopped process cannot fork; once a round
    finds none still running, all are killed and our own children reaped.
    Returns how many were killed.
    """
    try:
        with open("/proc/self/cmdline", "rb") as file:
            own = file.read()
    except OSError:
        return 0  # no /proc: nothing to sweep with
    deadline = time.monotonic() + time_limit
    stopped: set[int] = set()
    while time.monotonic() < deadline:
        fresh = [pid for pid in _forked_copies(own) if pid not in stopped]
        if not fresh:
            break
        for pid in fresh:
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:
                pass
            stopped.add(pid)
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for pid in stopped:
        try:
            os.waitpid(pid, 0)  # our own children would stay zombies and hold process slots
        except ChildProcessError:
            pass  # a grandchild: its parent's death hands it to PID 1, which reaps it
    return len(stopped)


def init_main() -> None:
    """PID 1 of a container: reap orphans; obey only the engine's signals (SIGUSR1: kill every other process).

    Signals stay blocked and are taken with sigwaitinfo, which names the
    sender: one from inside the container (user code's ``os.kill(1, ...)``,
    ``pkill``) carries a pid there and is ignored, so the sandbox cannot stop
    itself; one from the engine, outside its PID namespace, carries pid 0.
    PID 1 is also made non-dumpable, so code running as the same user cannot
    ptrace it.
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except (OSError, AttributeError):
        pass
    watched = {signal.SIGCHLD, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    while True:
        info = signal.sigwaitinfo(watched)
        if info.si_signo == signal.SIGUSR1 and info.si_pid == 0:
            try:
                os.kill(-1, signal.SIGKILL)  # every process this user may signal, except PID 1 itself
            except ProcessLookupError:
                pass
        elif info.si_signo in (signal.SIGTERM, signal.SIGINT) and info.si_pid == 0:
            os._exit(0)
        while True:  # reap after every signal: a blocked SIGCHLD is delivered once for many children
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break


def main() -> None:
    if sys.argv[1:] == ["init"]:
        init_main()
        return
    os.environ.setdefault("MPLBACKEND", "Agg")
    # plt.show() has nothing to show on: figures are saved after each cell instead, so its warning is noise.
    warnings.filterwarnings("ignore", message=r".*(non-GUI backend|non-interactive).*cannot (be )?show")
    warnings.filterwarnings("ignore", message="To exit: use")  # IPython's advice for a terminal, after exit()
    os.makedirs(DATA_DIR, exist_ok=True)
    os.chdir(DATA_DIR)
    # Requests and replies travel on private copies of fds 0 and 1: user code that
    # closes sys.stdin (exit() does) or writes to fd 1 cannot break the protocol.
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stray output between calls is discarded
    sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False, buffering=1)
    sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False, buffering=1)
    sys.stdin = open(0, encoding="utf-8", closefd=False)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGINT_ONLY)  # deliverable only while user code runs
    mode = os.environ.get("HARMONY_KERNEL_MODE", "auto")
    if mode not in KERNEL_MODES:
        sys.exit(f"HARMONY_KERNEL_MODE must be one of {', '.join(KERNEL_MODES)}, not {mode!r}")
    try:
        kernel = Kernel(protocol, mode)
    except Exception as exc:  # IPython was asked for and cannot run
        print(f"the IPython kernel cannot start: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    kernel.serve(requests)


if __name__ == "__main__":
    main()
