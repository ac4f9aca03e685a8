"""Batching across requests: one queue per model, decoded in batches on one worker thread.

Requests put their lines on the model's queue with their decoding options. The worker takes
the oldest waiting item, then keeps collecting for up to ``max_wait_ms`` (counted from when that
item arrived, or from the end of the previous batch if it arrived during it: the clients just
answered then have time to send their next lines, so concurrent clients fall into one batch
instead of two that alternate) or until ``max_batch_tokens`` source tokens (counted as
characters / 4 + 1, an estimate that needs no
tokenizer), takes every waiting item with the same options, and decodes those lines in one
``Translator.translate_nbest`` call, which sorts them by length. Each request gets its own
lines back. A long request is split into pieces of at most ``max_batch_tokens``, so it never
holds the others back by more than one batch. The queue holds at most ``max_queue`` lines;
beyond that :class:`QueueFull` asks the client to come back later.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from dataclasses import dataclass, field


class QueueFull(Exception):
    """The model's queue is full; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the queue is full; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass
class _Item:
    lines: list[str]
    options: tuple  # hashable decoding options: items batch together only when equal
    future: asyncio.Future
    tokens: int  # estimated source tokens of its lines
    enqueued: float = field(default_factory=time.perf_counter)
    batch_size: int = 0  # lines in the batch that decoded it


_TORCH_THREAD: concurrent.futures.ThreadPoolExecutor | None = None


def torch_thread() -> concurrent.futures.ThreadPoolExecutor:
    """The one thread that runs torch in a server: it loads the models and decodes every batch.

    Not the event loop's thread, which must stay free for requests; and one thread only: once
    a process's first thread has run torch's parallel (OpenMP) code, the same code called from
    another thread ran about 1.5 times slower on a 2-core CPU (measured with torch 2.13), so
    the main thread never runs it."""
    global _TORCH_THREAD
    if _TORCH_THREAD is None:
        _TORCH_THREAD = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="torch")
    return _TORCH_THREAD


def estimate_tokens(line: str) -> int:
    """Source tokens of ``line``, estimated without a tokenizer."""
    return len(line) // 4 + 1


class Batcher:
    """Collects lines for one model and decodes them in batches (``decode(lines, options)``
    runs on a worker thread and returns one result per line)."""

    def __init__(self, decode, max_wait_ms: float = 5.0, max_batch_tokens: int = 4096,
                 max_queue: int = 4096, cost=estimate_tokens) -> None:
        self.decode, self.cost = decode, cost  # cost(line): its estimated source tokens
        self.max_wait = max_wait_ms / 1000.0
        self.max_batch_tokens = max_batch_tokens
        self.max_queue = max_queue
        self.waiting: list[_Item] = []
        self.queued_lines = 0
        self.queued_tokens = 0
        self.wakeup = asyncio.Event()
        self.on_batch = None  # called with each batch's size in lines (metrics)
        self.on_drop = None  # called with the number of lines dropped for a cancelled request
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def submit(self, lines: list[str], options: tuple) -> tuple[list, int]:
        """Decode ``lines`` with ``options``; returns one result per line, in order, and the
        size (in lines) of the largest batch they were decoded in."""
        if self.queued_lines + len(lines) > self.max_queue:
            raise QueueFull(retry_after=1)
        loop = asyncio.get_running_loop()
        items: list[_Item] = []
        piece, tokens = [], 0
        for line in lines:  # split long requests so that one batch holds at most one piece
            cost = self.cost(line)
            if piece and tokens + cost > self.max_batch_tokens:
                items.append(_Item(piece, options, loop.create_future(), tokens))
                piece, tokens = [], 0
            piece.append(line)
            tokens += cost
        items.append(_Item(piece, options, loop.create_future(), tokens))
        self.waiting.extend(items)
        self.queued_lines += len(lines)
        self.queued_tokens += sum(item.tokens for item in items)
        self.wakeup.set()
        try:
            results = await asyncio.gather(*(item.future for item in items))
        except asyncio.CancelledError:  # the client went away: drop what has not started
            dropped = [item for item in items if item in self.waiting]
            for item in dropped:
                self._dequeue(item)
            if self.on_drop is not None and dropped:
                self.on_drop(sum(len(item.lines) for item in dropped))
            raise
        return [r for part in results for r in part], max(item.batch_size for item in items)

    def _take_batch(self) -> list[_Item]:
        first = self.waiting[0]
        batch, tokens = [], 0
        for item in list(self.waiting):
            if item.options != first.options:
                continue
            if batch and tokens + item.tokens > self.max_batch_tokens:
                break
            batch.append(item)
            tokens += item.tokens
        for item in batch:
            self._dequeue(item)
        return batch

    def _dequeue(self, item: _Item) -> None:
        self.waiting.remove(item)
        self.queued_lines -= len(item.lines)
        self.queued_tokens -= item.tokens

    async def _run(self) -> None:
        free_since = 0.0  # when the previous batch was done
        while True:
            if not self.waiting:
                self.wakeup.clear()
                await self.wakeup.wait()
                continue
            deadline = max(self.waiting[0].enqueued, free_since) + self.max_wait
            while self.queued_tokens < self.max_batch_tokens:  # wait for more, or the deadline
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self.wakeup.clear()  # submit() sets it again
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.wakeup.wait(), left)
            batch = [item for item in self._take_batch() if not item.future.done()]
            if not batch:
                continue
            lines = [line for item in batch for line in item.lines]
            if self.on_batch is not None:
                self.on_batch(len(lines))
            try:
                results = await asyncio.get_running_loop().run_in_executor(
                    torch_thread(), self.decode, lines, batch[0].options)
            except Exception as err:  # noqa: BLE001 - the requests get the error, not the loop
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(err)
                continue
            finally:
                free_since = time.perf_counter()
            start = 0
            for item in batch:
                part = results[start : start + len(item.lines)]
                start += len(item.lines)
                item.batch_size = len(lines)
                if not item.future.done():
                    item.future.set_result(part)
