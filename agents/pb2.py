"""PB2 (Parker-Holder et al. 2020): PBT whose explore step picks hyperparameters by GP-UCB.

Every round, the explorer records for each member the improvement of its log val loss over the
last interval against (time, log LR, batch-size rung, each extra on its scale), all scaled to
[0, 1]. A Gaussian process
(scikit-learn's ``GaussianProcessRegressor``; time is an input, so the model can follow a
changing landscape) predicts the next interval's improvement, and each recipient of a copy gets
the candidate with the highest upper confidence bound ``mean + kappa_t * std``, with
``kappa_t = sqrt(2 log(C t^2 pi^2 / (6 delta)))`` (GP-UCB, Srinivas et al. 2010; C candidates,
delta = 0.1). Recipients in one round are made diverse by adding each pick to the data with its
predicted mean before the next pick.

scikit-learn is an optional extra: ``pip install "rlsched[pb2]"``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from rlsched.agents.pbt import PBT
from rlsched.core.agent import MemberView, PopulationView
from rlsched.core.checks import integer
from rlsched.core.space import Hyperparams, HyperparamSpace

DELTA = 0.1
MAX_CANDIDATES = 100_000  # a pick samples and scores every candidate: about a second at this bound
DIVERGED_IMPROVEMENT = -1.0  # a diverged interval's recorded improvement


def encode(hp: Hyperparams, space: HyperparamSpace, t: float) -> list[float]:
    """``(t, scaled log LR, scaled rung, each extra in name order)``, each in [0, 1]."""
    low, high = math.log(space.lr[0]), math.log(space.lr[1])
    rungs = max(len(space.batch_size) - 1, 1)
    extra = [r.to_unit(hp.extra[name]) for name, r in space.extra.items()]
    return [t, (math.log(hp.lr) - low) / (high - low), space.rung(hp.batch_size) / rungs, *extra]


class GPUCB:
    """The PB2 explorer; its data (and so its state) are the observed (x, improvement) pairs."""

    def __init__(self, candidates: int = 256) -> None:
        integer(candidates, "candidates", 1, MAX_CANDIDATES)  # each pick scores every candidate
        try:
            import sklearn  # noqa: F401
        except ImportError:
            raise ImportError('PB2 needs scikit-learn: pip install "rlsched[pb2]"') from None
        self.candidates = int(candidates)
        self.X: list[list[float]] = []
        self.y: list[float] = []
        self.seen = 0
        self._pending: list[tuple[list[float], float]] = []

    def observe(self, view: PopulationView) -> None:
        if view.decision <= self.seen:
            return
        t = (view.decision - 1) / view.decisions
        for member in view.members:
            previous, last = member.history[-2], member.history[-1]
            if last.diverged:
                gain = DIVERGED_IMPROVEMENT
            else:
                gain = math.log(max(previous.val_loss, 1e-12) / max(last.val_loss, 1e-12))
            self.X.append(encode(last.hparams, view.space, t))
            self.y.append(float(np.clip(gain, DIVERGED_IMPROVEMENT, 1.0)))
        self.seen = view.decision
        self._pending = []

    def explore(
        self, hp: Hyperparams, view: PopulationView, rng: np.random.Generator, donor: MemberView
    ) -> tuple[Hyperparams, list[str]]:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        space = view.space
        t = view.decision / view.decisions
        pool = [space.sample(rng) for _ in range(self.candidates - 1)] + [hp]
        X = np.array(self.X + [x for x, _ in self._pending])
        y = np.array(self.y + [v for _, v in self._pending])
        scales = [0.3] * X.shape[1]
        kernel = ConstantKernel(1.0) * Matern(length_scale=scales, nu=2.5) + WhiteKernel(0.1)
        gp = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=0)
        with warnings.catch_warnings():  # hyperparameters at their bounds are fine for a pick
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp.fit(X, y)
        Xc = np.array([encode(c, space, t) for c in pool])
        mean, std = gp.predict(Xc, return_std=True)
        kappa = math.sqrt(2 * math.log(len(pool) * max(view.decision, 1) ** 2 * math.pi**2 / (6 * DELTA)))
        best = int(np.argmax(mean + kappa * std))
        self._pending.append((Xc[best].tolist(), float(mean[best])))
        chosen = pool[best]
        extra = "".join(f", {n} {hp.extra[n]:.4g} -> {v:.4g}" for n, v in chosen.extra.items())
        return chosen, [
            f"GP-UCB pick lr {hp.lr:.4g} -> {chosen.lr:.4g}, batch_size {hp.batch_size} -> "
            f"{chosen.batch_size}{extra} (predicted gain {mean[best]:+.3f} +- {std[best]:.3f})"
        ]

    def adjust(self, member: MemberView, view: PopulationView, rng: np.random.Generator) -> Hyperparams:
        return member.hparams  # GP-UCB picks only for members that copy

    def config(self) -> None:
        return None  # PB2's own config carries ``candidates``

    def state_dict(self) -> dict[str, Any]:
        return {
            "X": [list(x) for x in self.X],
            "y": list(self.y),
            "seen": self.seen,
            "pending": [[list(x), v] for x, v in self._pending],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.X, self.y, self.seen = [list(x) for x in state["X"]], list(state["y"]), int(state["seen"])
        self._pending = [(list(x), float(v)) for x, v in state["pending"]]


class PB2(PBT):
    """PBT with GP-UCB explore; takes PBT's arguments (except ``explore``) and ``candidates``."""

    def __init__(self, *args: Any, candidates: int = 256, **kwargs: Any) -> None:
        super().__init__(*args, explore=GPUCB(candidates), **kwargs)

    def config(self) -> dict[str, Any]:
        config = {k: v for k, v in super().config().items() if k not in ("explore", "scale_lr")}
        return {**config, "candidates": self.explorer.candidates}
