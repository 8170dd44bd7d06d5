"""Make a tiny gpt-oss GGUF with llama.cpp's own converter, for the llamacpp backend's tests and demo.

No GGUF can be downloaded here, so one is made on the spot: the hand-set
checkpoint of :mod:`tiny_gpt_oss` (its greedy output is a known tool call,
then a known final answer) converted by ``convert_hf_to_gguf.py``, which the
llama-cpp-python source distribution carries (scripts/setup.sh unpacks it into
the cache folder). Run it as a command to make the README's demo model::

    .venv/bin/python tests/tiny_gguf.py tiny-gpt-oss.gguf

The weights are saved and converted in float32: greedy output in llama.cpp
then equals transformers' token for token (q8_0 moves the logits).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
SDIST = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}"


def cache_root() -> Path:
    """Where scripts/setup.sh keeps llama-cpp-python's wheel and source (HARMONY_AGENT_CACHE overrides)."""
    if os.environ.get("HARMONY_AGENT_CACHE"):
        return Path(os.environ["HARMONY_AGENT_CACHE"])
    system = Path("/var/cache/harmony-agent")
    return (
        system
        if os.access(system, os.W_OK) or not os.access(Path.home(), os.W_OK)
        else Path.home() / ".cache" / "harmony-agent"
    )


def find_converter() -> Path:
    """``convert_hf_to_gguf.py`` of the pinned llama.cpp: unpacked in the cache, or unpacked now from the cached sdist."""
    if os.environ.get("HARMONY_AGENT_LLAMA_CPP_SRC"):
        script = Path(os.environ["HARMONY_AGENT_LLAMA_CPP_SRC"]) / "convert_hf_to_gguf.py"
        if script.is_file():
            return script
        raise FileNotFoundError(f"HARMONY_AGENT_LLAMA_CPP_SRC has no convert_hf_to_gguf.py: {script.parent}")
    root = cache_root()
    source = root / SDIST / "vendor" / "llama.cpp"
    script = source / "convert_hf_to_gguf.py"
    if script.is_file():
        return script
    archive = root / "sdist" / f"{SDIST}.tar.gz"
    if not archive.is_file():
        raise FileNotFoundError(
            f"llama.cpp's converter is not cached ({script}); run scripts/setup.sh, or "
            f"pip download --no-deps --no-binary :all: llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION} -d {archive.parent}"
        )
    extract_converter(archive, root)
    return script


def extract_converter(archive: Path, root: Path) -> None:
    """Unpack only the converter, its ``conversion`` package and ``gguf-py`` from the sdist."""
    prefix = f"{SDIST}/vendor/llama.cpp/"
    wanted = (prefix + "convert_hf_to_gguf.py", prefix + "conversion/", prefix + "gguf-py/")
    with tarfile.open(archive) as tar, tempfile.TemporaryDirectory(dir=root) as scratch:
        members = [m for m in tar.getmembers() if m.name.startswith(wanted) and (m.isfile() or m.isdir())]
        tar.extractall(scratch, members=members, filter="data")
        target = root / SDIST
        if not target.exists():
            os.replace(Path(scratch) / SDIST, target)


def convert(checkpoint: str | os.PathLike[str], outfile: str | os.PathLike[str], outtype: str = "f32") -> Path:
    """Convert a Hugging Face checkpoint folder to GGUF with llama.cpp's script; returns the file."""
    script = find_converter()
    outfile = Path(outfile)
    result = subprocess.run(
        [sys.executable, str(script), str(checkpoint), "--outfile", str(outfile), "--outtype", outtype],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0 or not outfile.is_file():
        raise RuntimeError(f"convert_hf_to_gguf.py failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return outfile


#: Scripts for a tiny model that uses the python tool: it runs code, then answers.
PYTHON_CALL_SCRIPT = "<|channel|>analysis to=python code<|message|>print(6*7)<|call|>"
PYTHON_ANSWER_SCRIPT = "<|channel|>final<|message|>The answer is 42.<|return|>"


def make_tiny_gguf(outfile: str | os.PathLike[str], **scripts: str) -> Path:
    """Write the hand-set tiny gpt-oss checkpoint (see :mod:`tiny_gpt_oss`) and convert it to GGUF (f32)."""
    from helpers.tiny_gpt_oss import write_tiny_gpt_oss

    with tempfile.TemporaryDirectory() as scratch:
        folder = write_tiny_gpt_oss(Path(scratch) / "tiny-gpt-oss", **scripts)
        return convert(folder, outfile)


def write_random_gpt_oss(folder: str | os.PathLike[str], seed: int = 0) -> Path:
    """The same architecture and tokenizer with random weights: every layer matters, for exactness checks."""
    import torch
    from transformers import GptOssForCausalLM

    from helpers.tiny_gpt_oss import _write_tokenizer, tiny_config

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = GptOssForCausalLM(tiny_config()).to(torch.float32)
    model.save_pretrained(folder, safe_serialization=True)
    _write_tokenizer(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outfile", help="the GGUF file to write, e.g. tiny-gpt-oss.gguf")
    parser.add_argument(
        "--python",
        action="store_true",
        help="a model that calls the python tool (print(6*7)) instead of functions.get_weather",
    )
    args = parser.parse_args()
    scripts = {"call_script": PYTHON_CALL_SCRIPT, "answer_script": PYTHON_ANSWER_SCRIPT} if args.python else {}
    path = make_tiny_gguf(args.outfile, **scripts)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB); run it with --model llamacpp:{path}")


if __name__ == "__main__":
    main()
