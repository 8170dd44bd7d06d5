"""gpt-oss in-process through llama.cpp (``llama-cpp-python``), with its KV cache kept between steps.

This is the backend for an ordinary PC: llama.cpp runs gpt-oss's GGUF (MXFP4
experts) on a CPU in about 13 GB for gpt-oss-20b, where transformers needs
about 42 GB in bf16. It works on harmony's token ids only: the loop renders
prompts with openai-harmony and this backend never runs llama.cpp's own
tokenizer on them (that tokenizer treats some harmony specials inside plain
text as special tokens and others not), and the stop set comes from the loop
(llama.cpp counts ``<|return|>`` and ``<|call|>`` as end of generation, but not
``<|end|>``).

Cache reuse follows :class:`~agent.models.transformers_model.TransformersModel`:
the context keeps the longest common prefix of what it holds and the new
prompt, and only the rest is evaluated; a prompt that is entirely cached still
re-evaluates its last token, which is where next-token logits come from. The
sliding-window layers keep a full-size cache (``swa_full``), so rewinding to
any prefix is exact; with a window-sized cache a long rewind would silently
give wrong logits.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import re
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harmony_agent.harmony.encoding import VOCAB_SIZE
from harmony_agent.models.base import GenerationStats, Model, ModelError, SamplingParams, common_prefix
from harmony_agent.models.gguf_header import read_gguf_header
from harmony_agent.sandboxes.runtime import runtime

#: The llama-cpp-python release this backend is built and tested against (its llama.cpp knows gpt-oss).
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
INSTALL_HINT = (
    f"pip install 'llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}' (it compiles llama.cpp: several minutes), "
    "or run scripts/setup.sh, which caches the built wheel"
)
#: The context size used when none is given: gpt-oss's KV cache for 16k tokens is under 1 GB.
DEFAULT_N_CTX = 16384


#: llama.cpp's own log lines go here (never to stderr): ``logging.getLogger(NATIVE_LOGGER)`` shows them.
NATIVE_LOGGER = "harmony_agent.models.llamacpp.native"
#: ggml's log levels as this llama.cpp numbers them (NONE, DEBUG, INFO, WARN, ERROR, CONT) in Python's terms.
#: Its warnings are notes about the load (a full-size SWA cache, a short context), so they go to INFO.
_NATIVE_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.DEBUG, 3: logging.INFO, 4: logging.WARNING}
_native_log = logging.getLogger(NATIVE_LOGGER)
_log_guard = threading.Lock()
_log_callback: Any = None  # kept referenced: llama.cpp calls it from C


def _route_native_log(llama_cpp: Any) -> None:
    """Send llama.cpp's log to Python's logging instead of stderr, once.

    llama-cpp-python installs its own callback at import and prints whatever
    it takes for an error to stderr, which with this llama.cpp's numbering
    includes every warning: two lines on every run, ``--quiet`` or not. The
    log callback is llama.cpp's one global, already taken by llama-cpp-python;
    this replaces it when the first model loads, not at import.
    """
    global _log_callback
    with _log_guard:
        if _log_callback is not None:
            return
        last = [logging.DEBUG]

        @llama_cpp.llama_log_callback
        def callback(level: int, text: bytes, user_data: Any) -> None:
            value = last[0] if level == 5 else _NATIVE_LEVELS.get(level, logging.DEBUG)
            last[0] = value
            if _native_log.isEnabledFor(value):
                _native_log.log(value, "%s", text.decode("utf-8", "replace").rstrip("\n"))

        llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
        _log_callback = callback


def physical_cores() -> int:
    """CPU cores this process may use, counting a core's hyperthreads once.

    llama-cpp-python defaults to half the logical CPUs, which on a machine
    without hyperthreads leaves half the cores idle while decoding.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        try:
            siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip()
        except OSError:
            siblings = str(cpu)
        cores.add(siblings)
    return max(1, len(cores))


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelError(f"the llamacpp backend needs llama-cpp-python: {INSTALL_HINT}") from exc
    return llama_cpp


class LlamaCppModel(Model):
    """A GGUF model run in-process by llama.cpp.

    ``n_ctx`` is the context size (it becomes :attr:`context_window`, even
    where llama.cpp rounds its own up to a multiple of 256: llama-cpp-python's
    token buffer keeps the size asked for); ``n_threads`` the CPU threads (the
    physical cores when None); ``n_gpu_layers`` how many layers go to the GPU
    (-1 all), refused when the build has no GPU support; ``use_mmap`` maps the
    file instead of reading it. By default (None) it is off on the CPU:
    llama.cpp copies the MXFP4 experts into a repacked buffer there and would
    keep the whole file mapped besides, counting gpt-oss-20b twice (19-22 GiB
    instead of 12.3); with layers on a GPU it is on. A GGUF that is not gpt-oss
    is refused once its header is read, with a one-line reason.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        use_mmap: bool | None = None,
        n_batch: int = 512,
        name: str | None = None,
    ) -> None:
        super().__init__()
        llama_cpp = _import_llama_cpp()
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise ModelError(f"no GGUF file at {path}")
        if n_ctx < 16:
            raise ModelError("n_ctx must be at least 16")
        if n_gpu_layers and not llama_cpp.llama_supports_gpu_offload():
            raise ModelError(
                "n_gpu_layers was set but this llama-cpp-python build has no GPU support: "
                "rebuild it with CMAKE_ARGS=-DGGML_CUDA=on (see scripts/setup.sh)"
            )
        self.path = path
        self.name = name or f"llamacpp:{path}"
        self._llama_cpp = llama_cpp
        self.n_threads = n_threads or physical_cores()
        self.use_mmap = bool(n_gpu_layers) if use_mmap is None else use_mmap
        _route_native_log(llama_cpp)
        try:
            self._llama = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=n_batch,
                n_threads=self.n_threads,
                n_gpu_layers=n_gpu_layers,
                use_mmap=self.use_mmap,
                swa_full=True,  # exact rewinds: see the module docstring
                logits_all=False,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"llama.cpp could not load {path}: {exc}") from exc
        self._refuse_other_models(path)
        # llama.cpp rounds its context up (300 -> 512) but llama-cpp-python's buffer holds n_ctx tokens.
        self.context_window = min(int(n_ctx), int(self._llama.n_ctx()))
        self.n_vocab = int(self._llama.n_vocab())
        #: The tokens whose keys and values the context holds, position by position.
        self._cached: list[int] = []
        self._closed = False
        # Generations take turns: made on the runtime's loop at the first one (see generate), never a session's.
        self._lock: asyncio.Lock | None = None
        # Worker threads outlive a cancelled generation; this keeps them off the context in turn.
        self._thread_lock = threading.Lock()

    def _refuse_other_models(self, path: Path) -> None:
        """Close and refuse a GGUF that is not gpt-oss: harmony prompts mean nothing to other models."""
        metadata = getattr(self._llama, "metadata", None) or {}
        arch = metadata.get("general.architecture", "unknown")
        vocab = int(self._llama.n_vocab())
        problem = None
        if arch != "gpt-oss":
            problem = f"its architecture is {arch!r}"
        elif vocab < VOCAB_SIZE:
            problem = f"its vocabulary has {vocab} tokens, not harmony's {VOCAB_SIZE}"
        if problem is not None:
            self._llama.close()
            raise ModelError(
                f"{path} is not a gpt-oss GGUF ({problem}): this agent speaks harmony, which only gpt-oss understands"
            )

    # -- cache -------------------------------------------------------------------

    @property
    def cached_tokens(self) -> list[int]:
        """The tokens the context holds now (a copy)."""
        return list(self._cached)

    def reset_cache(self) -> None:
        """Forget the context: the next prompt is evaluated from the start."""
        with self._thread_lock:
            self._drop_from(0)

    def _drop_from(self, position: int) -> bool:
        """Remove the cache from ``position`` on; False when llama.cpp cannot cut there."""
        memory = self._llama_cpp.llama_get_memory(self._llama.ctx)
        ok = bool(self._llama_cpp.llama_memory_seq_rm(memory, 0, position, -1))
        if not ok:
            self._llama_cpp.llama_memory_clear(memory, True)
            position = 0
        del self._cached[position:]
        self._llama.n_tokens = position
        return ok

    def _reuse(self, prompt: list[int]) -> int:
        """Make the context hold a prefix of ``prompt``; return that prefix's length."""
        common = common_prefix(self._cached, prompt)
        if common == len(prompt):
            common -= 1  # the last prompt token must be fed to get next-token logits
        if common < len(self._cached) and not self._drop_from(common):
            return 0
        return common

    def _eval(self, tokens: list[int]) -> Any:
        """Evaluate ``tokens`` after what the context holds; return the last position's logits."""
        import numpy as np

        try:
            self._llama.eval(tokens)
        except Exception as exc:  # a failed decode leaves the context in an unknown state
            self._drop_from(0)
            raise ModelError(f"llama.cpp could not evaluate {len(tokens)} tokens: {exc}") from exc
        self._cached.extend(tokens)
        pointer = self._llama_cpp.llama_get_logits_ith(self._llama.ctx, -1)
        return np.array(
            np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)), dtype=np.float32
        )  # a copy: the next decode reuses the buffer

    def _prefill(self, prompt: list[int]) -> tuple[int, Any]:
        with self._thread_lock:
            cached = self._reuse(prompt)
            return cached, self._eval(prompt[cached:])

    def _step(self, token: int) -> Any:
        with self._thread_lock:
            return self._eval([token])

    def logits(self, prompt: Sequence[int]) -> Any:
        """Next-token logits after ``prompt``, reusing the cache like :meth:`generate` (for tests and benchmarks)."""
        prompt = self._check_prompt(prompt)
        return self._prefill(prompt)[1]

    def _check_prompt(self, prompt: Sequence[int]) -> list[int]:
        if self._closed:
            raise ModelError("the model was closed")
        prompt = [int(t) for t in prompt]
        if not prompt:
            raise ModelError("empty prompt")
        bad = next((t for t in prompt if not 0 <= t < self.n_vocab), None)
        if bad is not None:  # llama.cpp would refuse the batch (older builds abort)
            raise ModelError(f"token id {bad} is outside this model's vocabulary of {self.n_vocab}")
        if len(prompt) >= self.context_window:
            raise ModelError(
                f"the prompt ({len(prompt)} tokens) does not fit the context window ({self.context_window})"
            )
        return prompt

    # -- generation ----------------------------------------------------------------

    async def generate(
        self, prompt: Sequence[int], *, stop: Sequence[int], sampling: SamplingParams
    ) -> AsyncIterator[int]:
        """Generate on the process's runtime, from whichever loop calls: one llama.cpp context serves
        every session, one generation at a time, under a lock that lives on the runtime's loop."""
        async for token in runtime().relay(lambda: self._generate(prompt, stop, sampling), lockstep=True):
            yield token

    async def _generate(
        self, prompt: Sequence[int], stop: Sequence[int], sampling: SamplingParams
    ) -> AsyncGenerator[int, None]:
        import numpy as np

        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            prompt = self._check_prompt(prompt)
            rng = np.random.default_rng(sampling.seed)
            started = time.perf_counter()
            cached, logits = await asyncio.to_thread(self._prefill, prompt)
            self.last_stats = GenerationStats(
                prompt_tokens=len(prompt),
                prefilled_tokens=len(prompt) - cached,
                cached_tokens=cached,
                prefill_seconds=time.perf_counter() - started,
            )
            stop_set = set(stop)
            limit = sampling.max_tokens
            while True:
                token = self._sample(logits, sampling, rng)
                self.last_stats.completion_tokens += 1
                yield token
                if token in stop_set or (limit is not None and self.last_stats.completion_tokens >= limit):
                    return
                if len(self._cached) + 1 >= self.context_window:
                    return  # prompt and completion fill the context: the loop reports context_window
                logits = await asyncio.to_thread(self._step, token)

    def _sample(self, logits: Any, sampling: SamplingParams, rng: Any) -> int:
        return _sample(logits, sampling, rng)

    async def aclose(self) -> None:
        with self._thread_lock:
            if not self._closed:
                self._closed = True
                self._llama.close()


def _sample(logits: Any, sampling: SamplingParams, rng: Any) -> int:
    """Greedy at temperature 0, else nucleus sampling from ``rng`` (so a seed reproduces a run)."""
    import numpy as np

    if sampling.temperature == 0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / sampling.temperature
    probs = np.exp(scaled - scaled.max())
    if sampling.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        sorted_probs = probs[order] / probs.sum()
        keep = np.cumsum(sorted_probs) - sorted_probs < sampling.top_p
        kept = sorted_probs * keep
        index = int(np.searchsorted(np.cumsum(kept), rng.random() * kept.sum(), side="right"))
        return int(order[min(index, len(order) - 1)])
    cumulative = np.cumsum(probs)
    index = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    return min(index, len(probs) - 1)


def resolve_gguf(spec: str, *, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The GGUF file a ``llamacpp:`` spec names: a local path, or ``REPO_ID[:FILE]`` in the Hugging Face cache.

    Without ``FILE`` the repository's only ``.gguf`` file in the cache is used.
    Nothing is downloaded here (a 13 GB surprise is no way to start a run): a
    missing file is an error that says how to get it.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    repo, _, filename = spec.partition(":")
    if repo.count("/") != 1 or repo.startswith(("/", ".", "~")) or repo.endswith(".gguf"):
        raise ModelError(
            f"no GGUF file at {path} (and {spec!r} is not a Hugging Face repo id like owner/name[:file.gguf])"
        )
    if cache_dir is None:
        try:
            from huggingface_hub.constants import HF_HUB_CACHE
        except ImportError as exc:
            raise ModelError("resolving a repo id needs huggingface_hub: pip install huggingface_hub") from exc
        cache_dir = HF_HUB_CACHE
    fetch = f"hf download {repo}" + (f" {filename}" if filename else " --include '*.gguf'")
    folder = Path(cache_dir) / ("models--" + repo.replace("/", "--"))
    snapshots = sorted((folder / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime, reverse=True)
    ref = folder / "refs" / "main"
    if ref.is_file():  # the revision the hub client calls current comes first
        current = folder / "snapshots" / ref.read_text().strip()
        snapshots.sort(key=lambda p: p != current)
    if filename:
        for snapshot in snapshots:
            if (snapshot / filename).is_file():
                return snapshot / filename
        raise ModelError(
            f"{filename} of {repo} is not in the local Hugging Face cache ({cache_dir}); get it with: {fetch}"
        )
    files = sorted(snapshots[0].rglob("*.gguf")) if snapshots else []
    # A model split in shards (name-00001-of-00003.gguf) is loaded from its first shard.
    files = [f for f in files if not re.search(r"-\d{5}-of-\d{5}\.gguf$", f.name) or "-00001-of-" in f.name]
    if not files:
        raise ModelError(
            f"no .gguf file of {repo} is in the local Hugging Face cache ({cache_dir}); get one with: {fetch}"
        )
    if len(files) > 1:
        names = ", ".join(str(f.relative_to(snapshots[0])) for f in files)
        raise ModelError(f"{repo} has several GGUF files in the cache ({names}): name one as llamacpp:{repo}:FILE")
    return files[0]


def parse_spec(rest: str) -> tuple[str, dict[str, Any]]:
    """Split ``PATH_OR_REPO?n_ctx=8192&n_threads=4&n_gpu_layers=-1&use_mmap=0`` into the target and options."""
    target, _, query = rest.partition("?")
    options: dict[str, Any] = {}
    for item in filter(None, query.split("&")):
        key, sep, value = item.partition("=")
        if key in ("n_ctx", "n_threads", "n_gpu_layers", "n_batch") and sep:
            try:
                options[key] = int(value)
            except ValueError:
                raise ModelError(f"llamacpp option {key} needs an integer, not {value!r}") from None
        elif key == "use_mmap" and value in ("0", "1", "true", "false"):
            options[key] = value in ("1", "true")
        else:
            raise ModelError(
                f"unknown llamacpp option {item!r}: use n_ctx, n_threads, n_gpu_layers, n_batch or use_mmap"
            )
    return target, options


def load_llamacpp(rest: str, **kwargs: Any) -> LlamaCppModel:
    """Build a :class:`LlamaCppModel` from what follows ``llamacpp:`` in a model spec."""
    target, options = parse_spec(rest)
    return LlamaCppModel(resolve_gguf(target), name=f"llamacpp:{target}", **{**options, **kwargs})


#: What the process itself takes beyond the model: Python, the agent, llama.cpp's runtime and thread pool.
PROCESS_BYTES = 256 * 2**20
#: What programs have on a PC sold as 16 GB (16e9 bytes) once the system and a desktop take their 1.5 GiB.
SIXTEEN_GB_PC = 16 * 10**9 - 3 * 2**29


@dataclass(frozen=True)
class MemoryNeed:
    """What running a GGUF takes, part by part, in bytes (see :func:`memory_breakdown`)."""

    architecture: str
    weights: int
    kv_cache: int
    compute: int
    process: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.process

    def describe(self) -> str:
        gib = 2**30
        return (
            f"weights {self.weights / gib:.1f} + KV cache {self.kv_cache / gib:.2f} + compute buffer "
            f"{self.compute / gib:.2f} + process {self.process / gib:.2f} GiB"
        )


def _header(path: str | os.PathLike[str]) -> tuple[dict[str, Any], int]:
    """A GGUF's metadata (less the tokenizer's, but with its vocabulary's size) and the bytes of its tensors."""
    header = read_gguf_header(path)
    fields = {key: value for key, (value, _, _) in header.fields.items() if not key.startswith("tokenizer.")}
    tokens = header.value("tokenizer.ggml.tokens")
    fields["n_vocab"] = len(tokens) if isinstance(tokens, list) else 0
    return fields, header.tensor_bytes()


def memory_breakdown(path: str | os.PathLike[str], n_ctx: int = DEFAULT_N_CTX, n_batch: int = 512) -> MemoryNeed:
    """What a GGUF needs to run here: weights, f16 KV cache, llama.cpp's compute buffer, the process.

    The sliding-window layers' cache is counted at full size (``swa_full``).
    The compute buffer is what llama.cpp reserves for one batch of
    ``min(n_batch, n_ctx)`` tokens: the larger of the logits (vocabulary x
    batch, f32) and the attention scores (context x batch x heads, f16), plus
    the activations; for gpt-oss-20b at a 16k context that is about 1.07 GiB.
    """
    fields, weights = _header(path)
    arch = str(fields.get("general.architecture") or "unknown")

    def value(key: str, default: int = 0) -> int:
        found = fields.get(f"{arch}.{key}")
        return int(found) if isinstance(found, int | float) else default

    layers, heads = value("block_count"), value("attention.head_count", 1)
    kv_heads = value("attention.head_count_kv", 1)
    embedding = value("embedding_length")
    head_dim = value("attention.key_length") or embedding // max(heads, 1)
    batch = min(n_batch, n_ctx)
    kv_cache = layers * kv_heads * head_dim * 2 * 2 * n_ctx  # keys and values, 2 bytes each
    compute = max(int(fields["n_vocab"]) * batch * 4, n_ctx * batch * heads * 2) + batch * embedding * 32
    return MemoryNeed(arch, weights, kv_cache, compute, PROCESS_BYTES)


def memory_needed(path: str | os.PathLike[str], n_ctx: int = DEFAULT_N_CTX) -> int:
    """Bytes of a GGUF's weights plus an f16 KV cache of ``n_ctx`` tokens, read from its header.

    The sliding-window layers are counted at full size too, since this backend keeps them so (``swa_full``).
    :func:`memory_breakdown` adds the compute buffer and the process.
    """
    need = memory_breakdown(path, max(n_ctx, 1))
    return need.weights + (need.kv_cache if n_ctx > 0 else 0)


def machine_memory() -> tuple[int, int]:
    """(total, available) bytes of memory on this machine, from /proc/meminfo where there is one."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    available = total
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    return total, available
