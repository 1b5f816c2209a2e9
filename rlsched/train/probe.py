"""Training statistics of an interval: per-step losses and a gradient probe into ``TrainStats``.

A job written from scratch (not a ``SupervisedJob``) gets the same statistics in a few lines::

    probe = GradientProbe(params, full_steps=samples // batch_size, pairs=8)
    for step in range(steps):
        loss = ...; loss.backward()
        probe.before_step(step, batch_size)   # after backward(), before optimizer.step()
        optimizer.step()
        probe.after_step(step)
        losses.append(loss.detach()); sizes.append(batch_size)
    return summarize(losses, sizes, probe)
"""

from __future__ import annotations

import math

import torch

from rlsched.core.job import TrainStats


def summarize(losses: list[torch.Tensor], sizes: list[int], probe: GradientProbe) -> TrainStats:
    """TrainStats of an interval from its per-step losses (0-dim tensors), batch sizes and probe."""
    per_step = torch.stack(losses).double().cpu()
    weights = torch.tensor(sizes, dtype=torch.float64)
    samples = sum(sizes)
    loss_mean = float((per_step * weights).sum() / samples)
    loss_std = float(per_step.std(unbiased=False)) if len(sizes) > 1 else 0.0
    nonfinite = not (math.isfinite(loss_mean) and math.isfinite(loss_std)) or probe.nonfinite
    return TrainStats(
        samples=samples,
        steps=len(sizes),
        loss_mean=loss_mean,
        loss_std=loss_std,
        grad_norm=probe.grad_norm(),
        b_simple=probe.b_simple(),
        update_ratio=probe.update_ratio,
        nonfinite=bool(nonfinite),
    )


class GradientProbe:
    """Gradient statistics measured on a few pairs of consecutive full steps.

    For consecutive minibatch gradients ``g_i``, ``g_{i+1}`` of size ``B`` drawn independently:
    ``E<g_i, g_{i+1}> = |G|^2`` and ``E|g_i|^2 = |G|^2 + tr(Sigma)/B``. Hence
    ``B_simple = tr(Sigma)/|G|^2`` from means over the probed pairs (McCandlish et al. 2018,
    appendix A, with consecutive steps in place of two batch sizes). The weights move between
    the two steps of a pair by one update, a small bias at sane learning rates.
    """

    def __init__(self, params: list[torch.Tensor], full_steps: int, pairs: int) -> None:
        self.params = params
        count = min(pairs, full_steps // 2)
        stride = full_steps // count if count else 0
        self.firsts = {k * stride for k in range(count)} | {0}
        self.seconds = {k * stride + 1 for k in range(count)}
        self.sq_norms: list[tuple[int, float]] = []
        self.dots: list[float] = []
        self.update_ratio = math.nan
        self.nonfinite = False
        self._previous: torch.Tensor | None = None
        self._weights: torch.Tensor | None = None

    def _flat_grad(self) -> torch.Tensor:
        return torch.cat(
            [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in self.params]
        ).double()

    def before_step(self, step: int, size: int, *, skip_nonfinite: bool = False) -> None:
        """Measure step ``step``'s gradients if it is a probed one. ``skip_nonfinite``: leave out
        non-finite gradients (a mixed-precision step that GradScaler skipped) instead of taking
        them for divergence."""
        if step not in self.firsts and step not in self.seconds:
            return
        grad = self._flat_grad()
        sq_norm = float(grad @ grad)
        if skip_nonfinite and not math.isfinite(sq_norm):
            return
        self.sq_norms.append((size, sq_norm))
        if step in self.seconds and self._previous is not None:
            self.dots.append(float(self._previous @ grad))
        self._previous = grad if step in self.firsts else None
        if not math.isfinite(sq_norm):
            self.nonfinite = True
        if step == 0:
            self._weights = torch.cat([p.detach().reshape(-1) for p in self.params]).double()

    def after_step(self, step: int) -> None:
        if self._weights is None:
            return
        after = torch.cat([p.detach().reshape(-1) for p in self.params]).double()
        norm = float(self._weights.norm())
        self.update_ratio = float((after - self._weights).norm()) / norm if norm > 0 else math.nan
        self._weights = None

    def grad_norm(self) -> float:
        if not self.sq_norms:
            return math.nan
        return sum(math.sqrt(max(sq, 0.0)) for _, sq in self.sq_norms) / len(self.sq_norms)

    def b_simple(self) -> float:
        if not self.dots:
            return math.nan
        signal = sum(self.dots) / len(self.dots)  # estimate of |G|^2
        if not (math.isfinite(signal) and signal > 0):
            return math.nan
        noise = sum(size * (sq - signal) for size, sq in self.sq_norms) / len(self.sq_norms)
        return max(noise, 0.0) / signal
