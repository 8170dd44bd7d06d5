"""The kernel that runs inside a sandbox: a long-lived Python process with notebook semantics.

Standard library only, because it runs in whatever image or rootfs the
sandbox offers. It speaks one JSON object per line: a request on stdin, a
response on the protocol stream (the original stdout, kept aside). User code's
stdout and stderr go to per-call capture files at the file-descriptor level,
so output from C extensions and subprocesses is captured too and can never
corrupt the protocol.

Requests:  {"id": "1", "op": "execute", "code": "...", "max_output": 20000}
           {"id": "2", "op": "ping"}
Responses: {"id": "1", "status": "ok" | "error" | "interrupted", "stdout": "...",
            "stderr": "...", "result": "repr of the last expression" | null,
            "error": {"ename", "evalue", "traceback"} | null,
            "files": [...], "images": [...], "duration_s": 0.01}

Timeouts are the host's job: it sends SIGINT, which interrupts the running
code with KeyboardInterrupt and yields status "interrupted".
"""

from __future__ import annotations

import ast
import json
import os
import signal
import sys
import tempfile
import time
import traceback

DATA_DIR = os.environ.get("HARMONY_KERNEL_DATA", "/mnt/data")
DEFAULT_MAX_OUTPUT = 20_000


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
        except KeyboardInterrupt:
            status = "interrupted"
            error = {"ename": "KeyboardInterrupt", "evalue": "execution interrupted", "traceback": ""}
        except BaseException as exc:  # SystemExit too: the kernel survives the user's exit()
            status = "error"
            error = {"ename": type(exc).__name__, "evalue": str(exc), "traceback": self._traceback(exc)}
        finally:
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
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.endswith("kernel.py")]
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

    def serve(self, requests) -> None:
        for line in requests:
            if not line.strip():
                continue
            try:
                request = json.loads(line)
                op = request.get("op", "execute")
            except (json.JSONDecodeError, AttributeError) as exc:
                self.respond({"id": None, "status": "protocol_error", "error": {"ename": "ProtocolError", "evalue": str(exc), "traceback": ""}})
                continue
            rid = request.get("id")
            if op == "ping":
                self.respond({"id": rid, "status": "ok", "pid": os.getpid()})
            elif op == "shutdown":
                self.respond({"id": rid, "status": "ok"})
                return
            elif op == "execute":
                try:
                    reply = self.execute(str(request.get("code", "")), int(request.get("max_output", DEFAULT_MAX_OUTPUT)))
                except KeyboardInterrupt:  # SIGINT that landed between user code and the reply
                    reply = {"status": "interrupted", "stdout": "", "stderr": "", "result": None, "files": [], "images": [],
                             "error": {"ename": "KeyboardInterrupt", "evalue": "execution interrupted", "traceback": ""}, "duration_s": 0}
                reply["id"] = rid
                self.respond(reply)
            else:
                self.respond({"id": rid, "status": "protocol_error", "error": {"ename": "ProtocolError", "evalue": f"unknown op {op!r}", "traceback": ""}})


def main() -> None:
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
    Kernel(protocol).serve(requests)


if __name__ == "__main__":
    main()
