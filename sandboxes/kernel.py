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

Run with the argument ``init`` it is instead a container's PID 1: it reaps
zombies, and on SIGUSR1 kills every other process in the sandbox, which works
even when a fork bomb has used up the process limit.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import signal
import sys
import tempfile
import threading
import time
import traceback

DATA_DIR = os.environ.get("HARMONY_KERNEL_DATA", "/mnt/data")
DEFAULT_MAX_OUTPUT = 20_000
MAX_TRANSFER_BYTES = 256 * 1024 * 1024
KERNEL_PID = os.getpid()
SIGINT_ONLY = {signal.SIGINT}


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


class Kernel:
    def __init__(self, protocol) -> None:
        self.protocol = protocol
        self.namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}
        self.figure_count = 0

    def respond(self, payload: dict) -> None:
        self.protocol.write(json.dumps(payload) + "\n")
        self.protocol.flush()

    def execute(self, code: str, max_output: int) -> dict:
        before = snapshot(DATA_DIR)
        out = tempfile.TemporaryFile()
        err = tempfile.TemporaryFile()
        saved = os.dup(1), os.dup(2)
        status, result, error = "ok", None, None
        started = time.perf_counter()
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            result = self._run(code)
        except KeyboardInterrupt as exc:
            status = "interrupted"
            error = {"ename": "KeyboardInterrupt", "evalue": "execution interrupted", "traceback": self._traceback(exc)}
        except BaseException as exc:  # SystemExit too: the kernel survives the user's exit()
            status = "error"
            error = {"ename": type(exc).__name__, "evalue": str(exc), "traceback": self._traceback(exc)}
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
        images = self._save_figures()
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
            "files": files, "images": images, "duration_s": round(time.perf_counter() - started, 6),
        }

    def _run(self, code: str) -> str | None:
        tree = ast.parse(code, "<cell>", "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, "<cell>", "exec"), self.namespace)
        if last is None:
            return None
        value = eval(compile(last, "<cell>", "eval"), self.namespace)
        if value is None:
            return None
        self.namespace["_"] = value
        return repr(value)

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
                    kill_forked_copies()
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
                self.respond({"id": rid, "status": "ok", "pid": os.getpid()})
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


def kill_forked_copies(time_limit: float = 5.0) -> None:
    """On interrupt, kill the kernel's forked copies (multiprocessing workers, fork bombs).

    A fork bomb that catches its errors never returns to the kernel, so the
    interrupt alone would leave it spinning at the process limit. Programs the
    code started with exec (servers, shells) have other command lines and are
    left alone, as a notebook's interrupt would. Copies are stopped first,
    round after round, because a stopped process cannot fork; once a round
    finds none still running, all are killed and our own children reaped.
    """
    try:
        with open("/proc/self/cmdline", "rb") as file:
            own = file.read()
    except OSError:
        return  # no /proc: nothing to sweep with
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


def init_main() -> None:
    """PID 1 of a container: reap orphans; SIGUSR1 kills every other process (the host's hard reset)."""

    def reap(*_args) -> None:
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def kill_others(*_args) -> None:
        try:
            os.kill(-1, signal.SIGKILL)  # every process this user may signal, except PID 1 itself
        except ProcessLookupError:
            pass
        reap()

    signal.signal(signal.SIGCHLD, reap)
    signal.signal(signal.SIGUSR1, kill_others)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    while True:
        signal.pause()


def main() -> None:
    if sys.argv[1:] == ["init"]:
        init_main()
        return
    os.environ.setdefault("MPLBACKEND", "Agg")
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
    Kernel(protocol).serve(requests)


if __name__ == "__main__":
    main()
