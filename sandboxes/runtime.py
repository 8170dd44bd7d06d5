"""The process's one runtime: a single event loop, on one background thread, that every session uses.

What lives on it: every session's turns, the tools' live resources (a
sandbox's kernel process and its reader task, a browser context, a display
connection, an MCP connection), the models that sessions share (their
generation locks), and the one Chromium per process. asyncio objects belong
to the loop that made them, so things that sessions share can be shared
safely only if there is one loop to make them on.

It sits in the bottom layer (``harmony_agent.sandboxes``) because every layer above uses it:
sandboxes, tools, models and sessions all import it, and nothing may import upwards.

How callers reach it, whichever thread or loop they are on:

- blocking calls (``Session.run``, ``close``) submit a coroutine and wait for it;
- async calls (``arun``, ``stream``, ``aclose``) await the concurrent future, wrapped
  for the caller's loop (``stream`` relays its events item by item);
- tools started or entered (``await tool.start()``, ``async with tool``) on a user's
  own loop hand that work to the runtime too (see :mod:`harmony_agent.tools.base`),
  so their I/O lives where the sessions that use them run;
- code already on the runtime (a session's turn, a tool called by it) runs directly.

Design, and what was weighed (docs/runtime.md says more):

- **One background thread** (chosen) versus **adopting the caller's loop when one is
  running**. Adopting saves one thread hop per call for async programs, but a
  process's callers are many: a notebook's loop, a worker thread with
  ``asyncio.run`` per call (whose loop closes after each call), a Starlette app's
  loop, plain blocking code. Whichever loop is adopted first, a later caller on
  another loop would find the shared model lock, browser or MCP connection bound
  to a loop that may be blocked or gone. One loop that no caller owns has a
  single rule that always holds; the hop costs tens of microseconds per call
  (a stream's events handed over before the caller's loop wakes up travel in one hop).
- **Isolation** comes from what a session owns (its sandbox, browser context,
  history), not from a thread of its own. The price: a tool that blocks the
  loop stalls every session, so blocking work goes to worker threads
  (:func:`call_maybe_async`, ``asyncio.to_thread``), as it must in any asyncio program.
- **Bounded threads:** one runtime thread, plus the loop's default executor (at
  most ``min(32, cpus + 4)`` workers), however many sessions come and go.
- **Lifetime:** the thread starts at first use, never at import, and is a daemon.
  Exit hooks (:meth:`Runtime.on_exit`) close sessions, then the shared things, while
  the loop still runs. After ``fork`` the child gets a runtime of its own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_DONE = object()
log = logging.getLogger("harmony_agent.sandboxes.runtime")


class Runtime:
    """An event loop running on a daemon thread, started at first use; see the module's docstring."""

    def __init__(self, name: str = "harmony-agent-runtime") -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        self._exit_hooks: list[Callable[[], None]] = []
        self._exit_registered = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The runtime's loop, started (with its thread) on first use."""
        with self._guard:
            if self._loop is None or self._loop.is_closed():
                ready = threading.Event()
                loop = asyncio.new_event_loop()

                def main() -> None:
                    asyncio.set_event_loop(loop)
                    ready.set()
                    while True:
                        try:
                            loop.run_forever()
                            return  # stop() was called
                        except BaseException as exc:
                            # asyncio lets SystemExit and KeyboardInterrupt raised inside a task escape
                            # run_forever (the task itself is already marked failed). The loop serves every
                            # session of the process, so it must outlive a tool that raised one.
                            log.warning("the runtime loop went on after %s escaped a task", type(exc).__name__)

                self._thread = threading.Thread(target=main, name=self.name, daemon=True)
                self._loop = loop
                self._thread.start()
                ready.wait()
            return self._loop

    @property
    def running(self) -> bool:
        return self._loop is not None and not self._loop.is_closed()

    def in_loop(self) -> bool:
        """True when called from the runtime's own thread (so its loop is the running one)."""
        return self._thread is not None and threading.current_thread() is self._thread

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the runtime and block until it is done.

        Ctrl-C while waiting cancels the coroutine (so it can clean up) and re-raises.
        """
        if self.in_loop():
            coroutine.close()
            raise RuntimeError(
                "a blocking call was made from inside the harmony-agent runtime's own event loop (from a tool or "
                "a hook); await the async form (arun, aclose) instead"
            )
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            try:
                future.result(timeout=10)
            except BaseException:  # the cancellation itself, or whatever clean-up raised
                pass
            raise

    async def run_async(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Await ``coroutine`` on the runtime from any loop; cancelling the caller cancels it."""
        if self.in_loop():
            return await coroutine
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return await asyncio.wrap_future(future)

    async def relay(
        self, produce: Callable[[], AsyncGenerator[T, None]], *, lockstep: bool = False
    ) -> AsyncIterator[T]:
        """Iterate ``produce()`` on the runtime, yielding its items on the caller's loop.

        Leaving the loop early (``break``, an exception, cancellation) cancels the producer.

        By default the producer runs ahead and items queue up (a session's events: nothing is
        held up by a slow reader). With ``lockstep`` the producer makes the next item only when
        the caller asks for it, as a plain async generator does: a model's generation does no
        decode step past the token at which its reader stops, so the model's cache holds just
        the tokens that were read.
        """
        if self.in_loop():
            # Closed at once when the consumer leaves early, so the producer's locks are not held until GC.
            async with contextlib.aclosing(produce()) as items:
                async for item in items:
                    yield item
            return
        mailbox = _Mailbox(asyncio.get_running_loop())
        hand_over = mailbox.hand_over
        ended = threading.Event()
        # Requests for items (lockstep only): released from the caller's side, awaited on the runtime;
        # an asyncio primitive binds to a loop at its first wait, which happens on the runtime.
        asked = asyncio.Semaphore(0) if lockstep else None

        async def pump() -> None:
            try:
                async with contextlib.aclosing(produce()) as items:
                    while True:
                        if asked is not None:
                            await asked.acquire()
                        try:
                            item = await items.__anext__()
                        except StopAsyncIteration:
                            break
                        hand_over((item, None))
            except BaseException as exc:  # handed to the consumer, who re-raises it there
                hand_over((_DONE, exc))
                if not isinstance(exc, Exception):
                    raise
            else:
                hand_over((_DONE, None))
            finally:
                ended.set()

        future = asyncio.run_coroutine_threadsafe(pump(), self.loop)
        try:
            while True:
                if asked is not None:
                    self.loop.call_soon_threadsafe(asked.release)
                item, error = await mailbox.get()
                if item is _DONE:
                    if error is not None:
                        raise error
                    return
                yield item
        finally:
            if not ended.is_set():
                future.cancel()
                # Give the producer a moment to finish its clean-up (not just the cancel being asked), but never
                # hold up a caller that is leaving, say on Ctrl-C: late items are dropped by hand_over.
                await asyncio.to_thread(ended.wait, 2)

    def on_exit(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` (blocking, from the exiting thread) at interpreter exit, while the loop still runs.

        Hooks run in the order they were added: sessions (added when the first session is made) close
        before the shared things they use (added when first made), such as the browser engine.
        """
        with self._guard:
            self._exit_hooks.append(hook)
            if self._exit_registered:
                return
            self._exit_registered = True
        # threading's exit hooks run before worker threads are joined, so a hook can still use
        # asyncio.to_thread (plain atexit runs after that pool is shut down).
        register = getattr(threading, "_register_atexit", None)
        if register is None:
            import atexit

            atexit.register(self._run_exit_hooks)
        else:
            register(self._run_exit_hooks)

    def _run_exit_hooks(self) -> None:
        if os.getpid() != _owner_pid:  # a forked child inherited the hook, not the runtime it belongs to
            return
        with self._guard:
            hooks, self._exit_hooks = list(self._exit_hooks), []
        for hook in hooks:
            try:
                hook()
            except Exception as exc:  # exit goes on; each resource's own exit handling is the backstop
                log.warning("an exit hook of the runtime failed: %s", exc)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop and its thread (after what runs on it was closed); a later use starts a new one."""
        with self._guard:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or loop.is_closed():
            return
        if thread is not None and thread is not threading.current_thread():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if not thread.is_alive():
                loop.close()


_runtime: Runtime | None = None
_owner_pid = 0
_runtime_guard = threading.Lock()


def runtime() -> Runtime:
    """The process's runtime, made at first call (never at import); a forked child gets a new one."""
    global _runtime, _owner_pid
    with _runtime_guard:
        if _runtime is None or _owner_pid != os.getpid():
            _runtime, _owner_pid = Runtime(), os.getpid()
        return _runtime


def on_runtime() -> bool:
    """True when the caller runs on the process's runtime loop."""
    current = _runtime
    return current is not None and _owner_pid == os.getpid() and current.in_loop()


async def call_maybe_async(function: Callable[..., Any], *args: Any) -> Any:
    """Call a sync or async function; a sync one runs on a worker thread, so it cannot stall the loop."""
    if asyncio.iscoroutinefunction(function):
        return await function(*args)
    value = await asyncio.to_thread(function, *args)
    if isinstance(value, Awaitable):
        value = await value
    return value


class _Mailbox:
    """Where a relay's producer (on the runtime) leaves items for its consumer (on the caller's loop).

    Items wait in a deque until the caller's loop wakes up; one wake-up carries every item handed
    over before it runs, so a burst of events costs one cross-thread call, not one each.
    """

    def __init__(self, caller: asyncio.AbstractEventLoop) -> None:
        self._caller = caller
        self._queue: asyncio.Queue[Any] = asyncio.Queue()  # made and awaited on the caller's loop only
        self._waiting: collections.deque[Any] = collections.deque()
        self._guard = threading.Lock()
        self._wake_pending = False

    def hand_over(self, item: Any) -> None:
        """From the runtime's thread: leave ``item``, and wake the caller's loop if it is not woken yet."""
        with self._guard:
            self._waiting.append(item)
            if self._wake_pending:
                return
            self._wake_pending = True
        try:
            self._caller.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the consumer's loop is closed: nobody is listening any more
            pass

    def _deliver(self) -> None:  # on the caller's loop
        with self._guard:
            items = list(self._waiting)
            self._waiting.clear()
            self._wake_pending = False
        for item in items:
            self._queue.put_nowait(item)

    async def get(self) -> Any:
        return await self._queue.get()
