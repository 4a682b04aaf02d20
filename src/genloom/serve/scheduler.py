"""The scheduler: one decoding thread per model runs a ``DecodeBatch`` that requests join and leave at step
boundaries (continuous batching), fed from a bounded queue; events go back to each request's asyncio queue.

A request (``Job``) is admitted to the batch when its rows fit (``max_batch``); otherwise it waits, and when
``max_waiting`` requests already wait it is refused (``Busy``: the server answers 429 with ``Retry-After``). A
cancelled request (its client went away) leaves the batch at the next step boundary.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from genloom.api import DecodeRequest, LoadedModel
from genloom.decoding.generate import DecodeBatch, GenerationConfig, Group, Joining, StepOutput, check_prompts
from genloom.serve.metrics import Metrics


class Busy(Exception):
    """The decode batch is full and so is the queue; the client should retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is at capacity; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass
class Event:
    """What a request hears from the decoding thread: ``text`` (a piece of row ``row``), ``end`` (row ``row``
    finished, ``reason`` stop or length), ``done`` (every row finished) or ``error`` (``error`` says why)."""

    kind: str
    row: int = 0
    text: str = ""
    reason: str | None = None
    error: BaseException | None = None
    attention: list[list[float]] | None = None  # with ``end`` when the request asked for its attention
    flagged: list[str] | None = None  # with ``end`` under a safety screen: the offensive words found


@dataclass
class Job:
    """One request to a model's scheduler: its prepared rows and how to decode them, or ``work`` to run whole on
    the decoding thread (beam search, which keeps its own batch), and where its events go."""

    request: DecodeRequest | None
    cfg: GenerationConfig
    loop: asyncio.AbstractEventLoop
    work: Callable[[], list[Event]] | None = None
    want_attention: bool = False
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: bool = False
    group: Group | None = None
    arrived: float = field(default_factory=time.perf_counter)
    last_step: float | None = None
    ended: set[int] = field(default_factory=set)
    attention: list[list[Any]] = field(default_factory=list)
    generated: int = 0  # tokens generated so far, all rows
    target_tokens: dict[int, list[str]] = field(default_factory=dict)  # a beam search's output tokens, by row
    source_tokens: dict[int, list[str]] = field(default_factory=dict)  # and its source tokens, by row
    prompt_tokens: int = 0  # the prompts' tokens, each prompt once

    @property
    def rows(self) -> int:
        """The rows it adds to the decode batch (none for ``work``, which runs between two steps)."""
        return len(self.request.ids) if self.request is not None else 0

    def send(self, event: Event) -> None:
        """Hand an event to the request's event loop (from the decoding thread); a closed loop has no listener."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:
            pass


class Scheduler:
    """Continuous batching for one model (see the module's docstring).

    Args:
        name: the model's name, for the metrics and the thread.
        model: the loaded model (a generator: it has the step contract).
        metrics: the server's counters.
        max_batch: the most rows decoded together.
        max_waiting: the most requests waiting for room in the batch.
    """

    def __init__(self, name: str, model: LoadedModel, metrics: Metrics, max_batch: int = 64, max_waiting: int = 256):
        self.name, self.model, self.metrics = name, model, metrics
        self.max_batch, self.max_waiting = max_batch, max_waiting
        self.batch = DecodeBatch(model.model, model.tokenizer.eos_id, getattr(model.model, "max_context", None))
        self.waiting: deque[Job] = deque()
        self.running: list[Job] = []
        self.condition = threading.Condition()
        self.closed = False
        self.peak_rows = 0  # the most rows decoded in one step so far
        self.thread = threading.Thread(target=self._run, name=f"genloom-decode-{name}", daemon=True)
        self.thread.start()

    @property
    def active(self) -> int:
        """Requests accepted and not yet finished, queued or decoding."""
        with self.condition:
            return len(self.waiting) + len(self.running)

    def submit(self, job: Job) -> None:
        """Queue ``job``; raises ``Busy`` when it cannot join the batch soon and ``max_waiting`` requests already
        wait."""
        with self.condition:
            if self.closed:
                raise RuntimeError("the scheduler is closed")
            if self._waiting_for_room() >= self.max_waiting and not self._fits(job):
                raise Busy(retry_after=1)
            self.waiting.append(job)
            self._gauges()
            self.condition.notify()

    def _fits(self, job: Job) -> bool:
        """``job`` and every request before it fit in the batch: it joins at the next step."""
        rows = sum(j.rows for j in self.running) + sum(j.rows for j in self.waiting)
        return rows + job.rows <= self.max_batch

    def _waiting_for_room(self) -> int:
        """Queued requests that will not join at the next step (those that fit are not waiting for room)."""
        free = self.max_batch - sum(j.rows for j in self.running)
        for count, job in enumerate(self.waiting):
            free -= job.rows
            if free < 0:
                return len(self.waiting) - count
        return 0

    def cancel(self, job: Job) -> None:
        """The client went away: drop ``job`` from the queue now, or from the batch at the next step boundary."""
        with self.condition:
            job.cancelled = True
            if job in self.waiting:
                self.waiting.remove(job)
                self._gauges()

    def close(self) -> None:
        with self.condition:
            self.closed = True
            self.condition.notify()
        self.thread.join(timeout=10)

    def _gauges(self) -> None:
        self.metrics.queue_depth.labels(self.name).set(len(self.waiting))
        self.metrics.active.labels(self.name).set(len(self.waiting) + len(self.running))
        self.metrics.batch_rows.labels(self.name).set(self.batch.rows)

    def _admit(self) -> list[Job]:
        """Wait for work; take the waiting requests that fit in the batch, first come first served."""
        with self.condition:
            while not self.closed and not self.waiting and not self.running:
                self.condition.wait()
            joining, rows = [], self.batch.rows
            while self.waiting and rows + self.waiting[0].rows <= self.max_batch:
                job = self.waiting.popleft()
                rows += job.rows
                joining.append(job)
            self.running += joining
            self._gauges()
            return joining

    def _run(self) -> None:
        while not self.closed:
            self._join(self._admit())
            if self.closed or not self.batch.groups:
                continue
            try:
                self._step()
            except Exception as error:  # noqa: BLE001 - a failed step fails its requests, never the server
                for job in list(self.running):
                    self._fail(job, error)
                self.batch = DecodeBatch(self.model.model, self.model.tokenizer.eos_id, self.batch.max_context)

    def _join(self, jobs: list[Job]) -> None:
        """Beam searches run whole now; the other requests join the batch together (one prefill where they can)."""
        joining = []
        for job in jobs:
            if job.cancelled:
                self._retire(job)
            elif job.work is not None:
                self._work(job)
            else:
                try:
                    check_prompts(job.request.ids, self.batch.max_context)
                    joining.append(job)
                except Exception as error:  # noqa: BLE001 - a request the model cannot take fails alone
                    self._fail(job, error)
        if not joining:
            return
        requests = [Joining(job.request.ids, job.cfg, **{k: v for k, v in job.request.engine.items()
                                                          if k != "max_context"}) for job in joining]
        try:
            groups = self.batch.join_all(requests)
        except Exception as error:  # noqa: BLE001
            for job in joining:
                self._fail(job, error)
            return
        for job, group in zip(joining, groups):
            job.group = group
            job.attention = [[] for _ in range(job.rows)]
            self.metrics.prompt_tokens.labels(self.name).inc(sum(len(ids) for ids in job.request.ids))

    def _work(self, job: Job) -> None:
        try:
            events = job.work() + [Event("done")]
        except Exception as error:  # noqa: BLE001
            events = [Event("error", error=error)]
        for event in events:
            job.send(event)
        self._retire(job)

    def _fail(self, job: Job, error: BaseException) -> None:
        job.send(Event("error", error=error))
        self._retire(job)

    def _step(self) -> None:
        jobs = {id(job.group): job for job in self.running if job.group is not None}
        groups = list(self.batch.groups)
        self.peak_rows = max(self.peak_rows, self.batch.rows)
        now = time.perf_counter()
        for group, output in zip(groups, self.batch.choose()):
            job = jobs.get(id(group))
            if job is None:  # left over from a join that failed half-way: it leaves at once
                group.cancelled = True
                continue
            self._deliver(job, output, now)
            if job.cancelled:
                group.cancelled = True
        self.batch.advance()
        for group in groups:
            job = jobs.get(id(group))
            if group.done and job is not None:
                if not job.cancelled:
                    self._end_rows(job, range(job.rows))
                    job.send(Event("done"))
                self._retire(job)
        with self.condition:
            self._gauges()

    def _deliver(self, job: Job, output: StepOutput, now: float) -> None:
        """Turn one step's tokens into text events; end the rows that finished."""
        if job.group.error is not None:  # its options forbid every token: it fails alone and leaves
            job.send(Event("error", error=job.group.error))
            job.cancelled = True
            return
        emitted = output.emitted.nonzero().flatten().tolist()
        job.generated += len(emitted)
        if emitted:
            self.metrics.generated_tokens.labels(self.name).inc(len(emitted))
            if job.last_step is None:
                self.metrics.first_token.labels(self.name).observe(now - job.arrived)
            else:
                self.metrics.between_tokens.labels(self.name).observe(now - job.last_step)
            job.last_step = now
        for row in emitted:
            if job.want_attention and output.attention is not None:
                job.attention[row].append(output.attention[row].float().cpu().tolist())
            piece = job.request.streams[row].feed(int(output.tokens[row]))
            if piece:
                job.send(Event("text", row=row, text=piece))
        self._end_rows(job, [r for r, reason in enumerate(job.group.reasons) if reason is not None])

    def _end_rows(self, job: Job, rows) -> None:
        for row in rows:
            if row in job.ended:
                continue
            job.ended.add(row)
            rest = job.request.streams[row].finish()
            if rest:
                job.send(Event("text", row=row, text=rest))
            job.send(Event("end", row=row, reason=job.group.reasons[row] or "length",
                           attention=job.attention[row] if job.want_attention else None,
                           flagged=job.request.streams[row].flagged if job.cfg.safety else None))

    def _retire(self, job: Job) -> None:
        with self.condition:
            if job in self.running:
                self.running.remove(job)
            self._gauges()
