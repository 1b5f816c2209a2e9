"""A batch sampler whose batch size can change between any two steps, with no lag."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from rlsched.core.checks import integer


class DynamicBatchSampler(Sampler[list[int]]):
    """Yields batches of dataset indices; ``batch_size`` is read afresh for every batch.

    Data order is a fresh permutation per epoch, derived from ``(seed, epoch)`` alone, so the
    sampler's whole state is ``(epoch, position)`` and a restored sampler continues exactly.

    Use it as a DataLoader's ``batch_sampler``. Changing ``batch_size`` takes effect at the very
    next batch as long as the loader does not prefetch (``num_workers=0``, the default); with
    worker processes, batches already prefetched keep their old size.

    Iterating yields the rest of the current epoch (its last batch may be smaller unless
    ``drop_last``); the next iteration starts the next epoch. :meth:`take` instead draws an exact
    number of indices and runs on into the next epoch when needed.

    Distributed data parallel: give every rank the same ``seed`` and ``batch_size`` plus its
    ``num_replicas`` and ``rank`` (as for torch's ``DistributedSampler``). ``batch_size`` is then
    the global batch: each rank gets the disjoint slice ``batch[rank::num_replicas]`` of every
    global batch, so the ranks together see exactly the single-process sequence. An epoch's last
    batch is dropped when it has fewer than ``num_replicas`` examples, so no rank gets an empty
    one. The state is global, so it restores onto any number of ranks.

    >>> sampler = DynamicBatchSampler(10, batch_size=4, shuffle=False)
    >>> sampler.take(3).tolist(), sampler.take(9).tolist()
    ([0, 1, 2], [3, 4, 5, 6, 7, 8, 9, 0, 1])
    >>> [list(DynamicBatchSampler(10, 4, shuffle=False, num_replicas=2, rank=r))[0] for r in (0, 1)]
    [[0, 2], [1, 3]]
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        self.num_samples = integer(num_samples, "num_samples", 1, what="a positive integer")
        self.num_replicas = integer(num_replicas, "num_replicas", 1, what="a positive integer")
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < num_replicas:
            raise ValueError(
                f"rank: expected an integer from 0 to num_replicas - 1 = {num_replicas - 1}, got {rank!r}"
            )
        self.rank = int(rank)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.batch_size = batch_size
        self.epoch = 0
        self.position = 0
        self._perm: torch.Tensor | None = None
        self._perm_epoch = -1
        self._unclaimed: deque[int] = deque(maxlen=1024)  # global sizes of yielded batches

    @property
    def batch_size(self) -> int:
        """The global batch size of the next batch (all ranks together)."""
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        if self.num_replicas == 1:
            self._batch_size = integer(value, "batch_size", 1, what="a positive integer")
        else:
            what = f"an integer >= num_replicas = {self.num_replicas}, so that every rank gets an example"
            self._batch_size = integer(value, "batch_size", self.num_replicas, what=what)

    def _permutation(self) -> torch.Tensor:
        if self._perm_epoch != self.epoch:
            if self.shuffle:
                seed = int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0])
                generator = torch.Generator().manual_seed(seed)
                self._perm = torch.randperm(self.num_samples, generator=generator)
            else:
                self._perm = torch.arange(self.num_samples)
            self._perm_epoch = self.epoch
        assert self._perm is not None
        return self._perm

    def _advance(self, count: int) -> torch.Tensor:
        """Indices of the next ``count`` examples of the current epoch (``count`` fits in it)."""
        chunk = self._permutation()[self.position : self.position + count]
        self.position += count
        if self.position == self.num_samples:
            self.epoch += 1
            self.position = 0
        return chunk

    def _shard(self, indices: torch.Tensor) -> torch.Tensor:
        return indices if self.num_replicas == 1 else indices[self.rank :: self.num_replicas]

    def take(self, count: int) -> torch.Tensor:
        """This rank's share of the next ``count`` indices (all of them on one process), as an
        int64 tensor, crossing into new epochs as needed."""
        parts = []
        while count > 0:
            step = min(count, self.num_samples - self.position)
            parts.append(self._advance(step))
            count -= step
        return self._shard(parts[0] if len(parts) == 1 else torch.cat(parts))

    def _smallest_batch(self) -> int:
        """The fewest examples the epoch's last batch may have before it is dropped."""
        return self.batch_size if self.drop_last else self.num_replicas

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch
        self._unclaimed.clear()  # batches prefetched by an abandoned loader were never trained on
        while self.epoch == epoch:
            left = self.num_samples - self.position
            if left < self._smallest_batch():
                self.epoch += 1
                self.position = 0
                return
            size = min(self.batch_size, left)
            self._unclaimed.append(size)
            yield self._shard(self._advance(size)).tolist()

    def claim_batch_size(self) -> int | None:
        """The global size of the oldest batch yielded and not claimed yet, or None if there is none.

        ``AdaptiveScheduler.step`` claims one batch per step, so it counts the examples of an
        epoch's smaller last batch, and the global batch under distributed data parallel.
        """
        return self._unclaimed.popleft() if self._unclaimed else None

    def __len__(self) -> int:
        left = self.num_samples - self.position
        full, rest = divmod(left, self.batch_size)
        return full + (rest >= self._smallest_batch())

    def state_dict(self) -> dict[str, Any]:
        return {
            "num_samples": self.num_samples,
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self.position,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("num_samples") != self.num_samples:
            raise ValueError(
                f"sampler.num_samples: state is for {state.get('num_samples')!r} examples, "
                f"this sampler has {self.num_samples}"
            )
        self.batch_size = int(state["batch_size"])
        self.shuffle = bool(state["shuffle"])
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._perm_epoch = -1
        self._unclaimed.clear()
