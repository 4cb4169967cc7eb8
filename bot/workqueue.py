"""One bounded line in front of the model, served by one worker (no Telegram here).

Why one worker: on this machine class (2 cores) the model is the limit, not Python. Eight
threads answering at once only made every answer slower and hid the line; one worker
answering in arrival order, with a line of known length, lets the edge tell each user where
they stand ("you're #12, about 8 s") and refuse politely when the line is full.

A ``Ticket`` stands for one accepted question from ``submit`` until the edge calls
``release`` (after its reply was sent), so the line counts what users are really waiting
for. The model work itself runs in a single dedicated thread, in arrival order.

On shutdown, ``close(grace)`` refuses new work at once (``QueueClosed``); what is already in
line is still answered until the grace period ends, then whatever has not started fails
with ``QueueClosed`` so the edge can say so: nothing accepted is dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)

# Seconds one answer is assumed to take before any was timed: a whole answer on the seed
# corpus takes ~25 ms on an idle 2-core machine, and Telegram takes ~30 replies a second per
# bot (33 ms each). A pessimistic guess here sends needless busy notices to a first crowd.
FIRST_ESTIMATE_SECONDS = 0.05
# Weight of the newest sample in the running average: about the last ten answers count.
AVERAGE_WEIGHT = 0.1


class QueueFull(Exception):
    """The line is full; ``retry_after`` is about when it will have room (seconds)."""

    def __init__(self, retry_after: int):
        super().__init__(f"the line is full; retry in about {retry_after} s")
        self.retry_after = retry_after


class QueueClosed(Exception):
    """The worker is shutting down: this work was not (and will not be) done."""


class RunningAverage:
    """An exponentially weighted mean: cheap, and it follows a machine that gets busier."""

    def __init__(self, first: float, weight: float = AVERAGE_WEIGHT):
        self.value = first
        self.weight = weight
        self.samples = 0

    def add(self, sample: float) -> None:
        self.value = sample if self.samples == 0 else (1 - self.weight) * self.value + self.weight * sample
        self.samples += 1


@dataclass(eq=False)
class Ticket:
    """One accepted piece of work. ``ahead``: tickets accepted before it and not yet released."""

    ahead: int
    wait_seconds: float  # estimated seconds until its result is ready
    future: asyncio.Future
    _queue: WorkQueue = field(repr=False)
    _released: bool = False
    started: float | None = None

    @property
    def position(self) -> int:
        """Place in line: 1 means next (only the question being answered is ahead)."""
        return self.ahead

    async def result(self) -> Any:
        """The work's result (its exception re-raised; ``QueueClosed`` if it was never run)."""
        return await asyncio.shield(self.future)

    def release(self) -> None:
        """The reply went out (or failed for good): the place in line is free. Idempotent."""
        if not self._released:
            self._released = True
            self._queue._release(self)


@dataclass(eq=False)
class _Job:
    ticket: Ticket
    call: Callable[[], Any]


class WorkQueue:
    """At most ``capacity`` accepted, unreleased tickets; their work done one at a time, in order."""

    def __init__(self, capacity: int, first_estimate: float = FIRST_ESTIMATE_SECONDS):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.seconds_per_answer = RunningAverage(first_estimate)
        self._open: list[Ticket] = []  # accepted and not released, oldest first
        self._waiting: deque[_Job] = deque()
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-worker")
        self._closed = False
        self._deadline_handle: asyncio.TimerHandle | None = None
        self._last_release: float | None = None
        self.refused_full = 0
        self.refused_closed = 0
        self.completed = 0

    # -- what the edge asks -------------------------------------------------------

    def __len__(self) -> int:
        """Accepted questions not yet released (being answered, waiting, or being sent)."""
        return len(self._open)

    @property
    def closed(self) -> bool:
        return self._closed

    def estimate(self, ahead: int) -> float:
        """Seconds until a question with ``ahead`` questions before it has its answer."""
        return (ahead + 1) * self.seconds_per_answer.value

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Ticket:
        """Accept ``fn(*args, **kwargs)`` into the line, or raise ``QueueFull`` / ``QueueClosed``.

        Synchronous on purpose: nothing can slip in between the check and the enqueue, so
        places in line are exactly the order of ``submit`` calls. Call it from the event loop.
        """
        if self._closed:
            self.refused_closed += 1
            raise QueueClosed("shutting down")
        if len(self._open) >= self.capacity:
            self.refused_full += 1
            raise QueueFull(max(1, math.ceil(self.estimate(len(self._open)))))
        loop = asyncio.get_running_loop()
        ahead = len(self._open)
        ticket = Ticket(ahead, self.estimate(ahead), loop.create_future(), self)
        self._open.append(ticket)
        self._waiting.append(_Job(ticket, lambda: fn(*args, **kwargs)))
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work(), name="model-worker")
        return ticket

    # -- shutdown -------------------------------------------------------------------

    def close(self, grace: float) -> None:
        """Refuse new work now; answer what is in line for ``grace`` seconds, then refuse the rest."""
        if self._closed:
            return
        self._closed = True
        log.info("work queue closing: %d in line, %.1f s grace", len(self._waiting), grace)
        loop = asyncio.get_running_loop()
        self._deadline_handle = loop.call_later(max(0.0, grace), self.refuse_waiting)

    def refuse_waiting(self) -> None:
        """Fail everything in line that has not started with ``QueueClosed`` (grace over)."""
        if self._waiting:
            log.warning("grace period over: %d questions in line refused", len(self._waiting))
        while self._waiting:
            job = self._waiting.popleft()
            if not job.ticket.future.done():
                job.ticket.future.set_exception(QueueClosed("not started before the grace period ended"))

    async def drained(self) -> None:
        """Wait until the worker has nothing left to run."""
        while self._worker is not None and not self._worker.done():
            await asyncio.wait({self._worker})

    def shutdown(self) -> None:
        """Release the worker thread (after ``drained``)."""
        if self._deadline_handle is not None:
            self._deadline_handle.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- the worker -------------------------------------------------------------------

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            job = self._waiting.popleft()
            future = job.ticket.future
            if future.done():  # its handler gave up (cancelled): nothing to do
                continue
            job.ticket.started = time.monotonic()
            try:
                result = await loop.run_in_executor(self._executor, job.call)
            except Exception as exc:  # noqa: BLE001 - the ticket's owner handles it
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)

    def _release(self, ticket: Ticket) -> None:
        with contextlib.suppress(ValueError):
            self._open.remove(ticket)
        if not ticket.future.done():  # released before its turn (its handler failed): skip the work
            ticket.future.cancel()
            return
        if not ticket.future.cancelled() and ticket.future.exception() is None:
            self.completed += 1
            now = time.monotonic()
            own = now - (ticket.started or now)
            # Under load answers overlap (one is sent while the next is computed), so the gap
            # since the previous release is the real cost of a place in line; when idle, the
            # answer's own duration is. The smaller of the two is right in both cases.
            gap = now - self._last_release if self._last_release is not None else own
            self.seconds_per_answer.add(min(own, gap) if own > 0 else gap)
            self._last_release = now
