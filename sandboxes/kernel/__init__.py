"""The kernel that runs inside a sandbox, and the one text that carries it there.

The kernel is a long-lived Python process with notebook semantics. Its
modules (``output``, ``cells``, ``processes``, ``server``) use the standard
library only, because they run in whatever image or rootfs the sandbox
offers, and they import nothing from the host side. The host sends them in
at every start as one ``python3 -c`` argument, ``KERNEL_SOURCE``: their
sources and a small importer that serves them as the package
``harmony_kernel``, so an image never holds a stale copy and nothing has to
be written into the sandbox first.

The kernel speaks one JSON object per line: a request on stdin, a response
on the protocol stream (the original stdout, kept aside).

Requests:  {"id": "1", "op": "execute", "code": "...", "max_output": 20000}
           {"id": "2", "op": "upload", "path": "in.csv", "data": "<base64>"}
           {"id": "3", "op": "download", "path": "out.png"}
           {"op": "interrupt"}    (no reply: interrupts the running execute)
           {"id": "4", "op": "ping"} / {"id": "5", "op": "shutdown"}
Responses: {"id": "1", "status": "ok" | "error" | "interrupted", "stdout": "...",
            "stderr": "...", "result": "repr of the last expression" | null,
            "error": {"ename", "evalue", "traceback"} | null,
            "files": [...], "images": [...], "duration_s": 0.01}

Run with the argument ``init`` it is instead a container's PID 1 (see
``processes.init_main``).
"""

from __future__ import annotations

from pathlib import Path

#: The package name the modules have inside the sandbox (here they are ``sandboxes.kernel.*``).
PACKAGE = "harmony_kernel"
MODULES = ("output", "cells", "processes", "server")

_IMPORTER = '''
import sys


class EmbeddedModules:
    """Serves PACKAGE's modules from SOURCES: the kernel arrives as one -c argument, not as files."""

    def find_spec(self, name, path=None, target=None):
        if name != PACKAGE and name not in SOURCES:
            return None
        import importlib.util

        return importlib.util.spec_from_loader(name, self, is_package=name == PACKAGE)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if module.__name__ in SOURCES:
            exec(compile(SOURCES[module.__name__], f"<{module.__name__}>", "exec"), module.__dict__)


sys.meta_path.insert(0, EmbeddedModules())
__import__(PACKAGE + ".server").server.main()
'''


def bundle() -> str:
    """The kernel as one Python program: the modules' sources, the importer, and a call to ``server.main``."""
    folder = Path(__file__).parent
    sources = {f"{PACKAGE}.{name}": (folder / f"{name}.py").read_text() for name in MODULES}
    return f"PACKAGE = {PACKAGE!r}\nSOURCES = {sources!r}\n{_IMPORTER}"


KERNEL_SOURCE = bundle()
