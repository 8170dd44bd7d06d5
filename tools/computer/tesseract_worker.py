"""A long-lived tesseract for the computer tool: loads a language model once and reads image after image.

Run as its own process (``python tesseract_worker.py``) by ``ocr.Tesseract``:
the tesseract command loads its model on every call, which for the Latin
script model (89 MB, the one that reads ë, Ø, Ł, ñ) costs about half a
second, more than reading a window. This process keeps the model loaded and
talks through libtesseract's C API (ctypes, standard library only). Being a
process of its own, it carries its OpenMP thread limit in its own
environment and never in the agent's.

Protocol on stdin/stdout, each message a 4-byte big-endian length then
its bytes: a JSON request ``{"width", "height", "language", "psm",
"variables"}`` followed by a message of width*height 8-bit grey pixels;
the answer is tesseract's TSV, or a line starting ``ERROR:``. The process
ends when stdin closes (as it does when the agent dies).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import struct
import sys


def _library() -> ctypes.CDLL:
    name = ctypes.util.find_library("tesseract") or "libtesseract.so.5"
    lib = ctypes.CDLL(name)
    lib.TessBaseAPICreate.restype = ctypes.c_void_p
    lib.TessBaseAPIInit3.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    lib.TessBaseAPISetVariable.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    lib.TessBaseAPISetPageSegMode.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.TessBaseAPISetImage.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
    ]
    lib.TessBaseAPISetSourceResolution.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.TessBaseAPIRecognize.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.TessBaseAPIGetTsvText.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.TessBaseAPIGetTsvText.restype = ctypes.c_void_p
    lib.TessDeleteText.argtypes = [ctypes.c_void_p]
    return lib


def _read(stream) -> bytes | None:
    header = stream.read(4)
    if len(header) < 4:
        return None
    (length,) = struct.unpack(">I", header)
    data = stream.read(length)
    return data if len(data) == length else None


def _write(stream, data: bytes) -> None:
    stream.write(struct.pack(">I", len(data)) + data)
    stream.flush()


def serve(stdin, stdout) -> None:
    lib = _library()
    apis: dict[str, int] = {}
    while True:
        request_bytes = _read(stdin)
        if request_bytes is None:
            return
        pixels = _read(stdin)
        if pixels is None:
            return
        try:
            request = json.loads(request_bytes)
            key = json.dumps([request["language"], request.get("variables") or {}], sort_keys=True)
            api = apis.get(key)
            if api is None:
                api = lib.TessBaseAPICreate()
                if lib.TessBaseAPIInit3(api, None, request["language"].encode()) != 0:
                    raise RuntimeError(f"tesseract could not load the language {request['language']!r}")
                for name, value in (request.get("variables") or {}).items():
                    lib.TessBaseAPISetVariable(api, str(name).encode(), str(value).encode())
                apis[key] = api
            width, height = int(request["width"]), int(request["height"])
            if len(pixels) != width * height:
                raise ValueError("the pixels do not match the size given")
            lib.TessBaseAPISetPageSegMode(api, int(request.get("psm", 11)))
            lib.TessBaseAPISetImage(api, pixels, width, height, 1, width)
            lib.TessBaseAPISetSourceResolution(api, int(request.get("dpi", 144)))
            if lib.TessBaseAPIRecognize(api, None) != 0:
                raise RuntimeError("tesseract could not read the image")
            pointer = lib.TessBaseAPIGetTsvText(api, 0)
            text = ctypes.string_at(pointer) if pointer else b""
            if pointer:
                lib.TessDeleteText(pointer)
            _write(stdout, text)
        except Exception as exc:  # answer, and keep serving
            _write(stdout, f"ERROR: {exc}".encode())


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
