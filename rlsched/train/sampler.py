"""A batch sampler whose batch size can change between any two steps, with no lag."""

from __future__ import annotations

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

    >>> sampler = DynamicBatchSampler(10, batch_size=4, shuffle=False)
    >>> sampler.take(3).tolist(), sampler.take(9).tolist()
    ([0, 1, 2], [3, 4, 5, 6, 7, 8, 9, 0, 1])
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        self.num_samples = integer(num_samples, "num_samples", 1, what="a positive integer")
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.batch_size = batch_size
        self.epoch = 0
        self.position = 0
        self._perm: torch.Tensor | None = None
        self._perm_epoch = -1

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self._batch_size = integer(value, "batch_size", 1, what="a positive integer")

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

    def take(self, count: int) -> torch.Tensor:
        """The next ``count`` indices as an int64 tensor, crossing into new epochs as needed."""
        parts = []
        while count > 0:
            step = min(count, self.num_samples - self.position)
            parts.append(self._advance(step))
            count -= step
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch
        while self.epoch == epoch:
            left = self.num_samples - self.position
            if self.drop_last and left < self.batch_size:
                self.epoch += 1
                self.position = 0
                return
            yield self._advance(min(self.batch_size, left)).tolist()

    def __len__(self) -> int:
        left = self.num_samples - self.position
        return left // self.batch_size if self.drop_last else -(-left // self.batch_size)

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
