"""Inside the sandbox: the kernel process, serving JSON-line requests one at a time.

A reader thread takes requests while code runs, so an interrupt travels the
same channel as everything else and needs no way into the sandbox's process
table: the thread sends SIGINT to its own process, which raises
KeyboardInterrupt in the running code. When that fails (C code holding the
GIL), the host's grace period ends and it restarts the sandbox's processes.
User code's stdout and stderr go to per-call capture files at the
file-descriptor level, so output from C extensions and subprocesses is
captured too and can never corrupt the protocol. Standard library only.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings

from .cells import IMAGE_TYPES, KERNEL_MODES, choose_cells, error_of
from .output import DATA_DIR, oom_kills, read_capture, save_image, snapshot, truncate
from .processes import KERNEL_PID, init_main, kill_forked_copies

DEFAULT_MAX_OUTPUT = 20_000
MAX_TRANSFER_BYTES = 256 * 1024 * 1024
MAX_FILES_LISTED = 50  # a cell that writes thousands of files gets a count, not a page of names
MAX_IMAGES_LISTED = 50  # likewise for thousands of display() images (the host lists fewer still)
SIGINT_ONLY = {signal.SIGINT}


class Kernel:
    """One session's state between requests: the cell runner, and the counters that name saved images."""

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
            "status": status,
            "stdout": stdout,
            "stderr": stderr,
            "result": result,
            "error": error,
            "files": files[:MAX_FILES_LISTED],
            "files_omitted": max(0, len(files) - MAX_FILES_LISTED),
            "images": images[:MAX_IMAGES_LISTED],
            "images_omitted": max(0, len(images) - MAX_IMAGES_LISTED),
            "duration_s": round(time.perf_counter() - started, 6),
            "oom_kills": oom_kills(),
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
                self.respond(
                    {
                        "id": rid,
                        "status": "ok",
                        "pid": os.getpid(),
                        "kernel": self.cells.name,
                        "fallback_reason": self.fallback_reason,
                        "oom_kills": oom_kills(),
                    }
                )
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
            return {
                "status": "interrupted",
                "stdout": "",
                "stderr": "",
                "result": None,
                "files": [],
                "images": [],
                "error": {"ename": "KeyboardInterrupt", "evalue": "execution interrupted", "traceback": ""},
                "duration_s": 0,
            }
        finally:
            signal.pthread_sigmask(signal.SIG_BLOCK, SIGINT_ONLY)
            with busy:
                state["running"] = False
            if signal.SIGINT in signal.sigpending():  # a late interrupt must not hit the next request
                signal.sigwait(SIGINT_ONLY)

    @staticmethod
    def _protocol_error(rid, message: str) -> dict:
        return {
            "id": rid,
            "status": "protocol_error",
            "error": {"ename": "ProtocolError", "evalue": message, "traceback": ""},
        }

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
            return {
                "status": "ok",
                "path": os.path.abspath(path),
                "size": len(data),
                "data": base64.b64encode(data).decode(),
            }
        except (OSError, ValueError) as exc:
            return {"status": "error", "error": {"ename": type(exc).__name__, "evalue": str(exc), "traceback": ""}}


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
