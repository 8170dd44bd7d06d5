"""One event loop per session, on a thread of its own.

A session's live resources (a sandbox's kernel process and reader task, a
browser, a display connection) are bound to the event loop they were created
on. ``asyncio.run`` per call would close that loop after the first turn, and
a user's own loop (``await session.arun(...)``) may not be the one a previous
``session.run(...)`` used. So all of a session's work runs on one loop that
lives as long as the session, whichever thread or loop the caller is on:
``run`` blocks on it, ``arun`` awaits it, ``stream`` relays its events.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_DONE = object()
log = logging.getLogger("harmony_agent.runtime")


class LoopThread:
    """An event loop running on a daemon thread, started at first use and stopped by :meth:`stop`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
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
                            # run_forever (the task itself is already marked failed). The session's
                            # loop must outlive a tool that raised one, so it goes on.
                            log.warning(
                                "the session loop %s went on after %s escaped a task", self.name, type(exc).__name__
                            )

                self._thread = threading.Thread(target=main, name=self.name, daemon=True)
                self._loop = loop
                self._thread.start()
                ready.wait()
            return self._loop

    @property
    def running(self) -> bool:
        return self._loop is not None and not self._loop.is_closed()

    def in_loop(self) -> bool:
        """True when called from this loop's own thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and block until it is done.

        Ctrl-C while waiting cancels the coroutine (so it can clean up) and re-raises.
        """
        if self.in_loop():
            coroutine.close()
            raise RuntimeError(
                "a blocking call was made from inside the session's own event loop; await the async form"
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
        """Await ``coroutine`` on the loop from any other loop; cancelling the caller cancels it."""
        if self.in_loop():
            return await coroutine
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return await asyncio.wrap_future(future)

    async def relay(self, produce: Callable[[], AsyncIterator[T]]) -> AsyncIterator[T]:
        """Iterate ``produce()`` on the loop, yielding its items on the caller's loop.

        Leaving the loop early (``break``, an exception, cancellation) cancels the producer.
        """
        if self.in_loop():
            async for item in produce():
                yield item
            return
        caller = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        ended = threading.Event()

        def hand_over(item: Any) -> None:
            try:
                caller.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the consumer's loop is closed: nobody is listening any more
                pass

        async def pump() -> None:
            try:
                async for item in produce():
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
                item, error = await queue.get()
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

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop and its thread (after the caller has closed what runs on it)."""
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


async def call_maybe_async(function: Callable[..., Any], *args: Any) -> Any:
    """Call a sync or async function; a sync one runs on a worker thread, so it cannot stall the loop."""
    if asyncio.iscoroutinefunction(function):
        return await function(*args)
    value = await asyncio.to_thread(function, *args)
    if isinstance(value, Awaitable):
        value = await value
    return value
