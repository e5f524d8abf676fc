"""Batches put on the devices ahead of the step that reads them.

`jax.device_put` (and `make_array_from_process_local_data`) return at once and copy in the background, so a batch
placed while the step before it runs is on the device when its own step starts: the transfer overlaps the
computation instead of following it. Every runner places batches its own way, with its sharding
(`StepRunner.place_batch`); this module only keeps them coming, `depth` ahead.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from typing import Any

DEPTH = 2  # batches on the devices ahead of the one a step reads: one in transfer while another waits


def prefetch_to_device(
    batches: Iterator[dict], place: Callable[[dict], Any], depth: int = DEPTH
) -> Iterator[tuple[dict, Any]]:
    """(host batch, placed batch) for each of `batches`, in order. While the caller works on one, the next `depth`
    are already placed (the host batch stays for what the loop counts on the host). A finite iterator ends with
    its last batch."""
    ahead: collections.deque = collections.deque()

    def top_up() -> None:
        while len(ahead) < depth:
            host = next(batches, None)
            if host is None:
                return
            ahead.append((host, place(host)))

    top_up()
    while ahead:
        current = ahead.popleft()
        top_up()  # the next batches' transfers start before this one's step is dispatched
        yield current
