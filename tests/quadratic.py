"""A noisy quadratic training job, shared by tests: its best schedule is known to decay."""

import math

import numpy as np

import rlsched


class NoisyQuadratic:
    """SGD on 0.5 * sum(h_i w_i^2) with minibatch gradient noise; the val loss is the exact loss.

    A constant LR either converges slowly (small) or stalls at a noise floor (large);
    a decaying LR does both, so the best schedule is known to decay."""

    H = np.logspace(-2, 0, 20)

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.w = np.ones(20) * 3.0

    def train(self, hp, samples):
        steps = samples // hp.batch_size
        for _ in range(steps):
            grad = self.H * self.w + self.rng.normal(size=20) * np.sqrt(self.H) * 2.0 / np.sqrt(hp.batch_size)
            self.w = self.w - hp.lr * grad
        loss = self.evaluate()["loss"]
        return rlsched.TrainStats(samples, steps, loss, 0.0, 0.0, math.nan, 0.0, not math.isfinite(loss))

    def evaluate(self):
        return {"loss": float(0.5 * np.sum(self.H * self.w**2))}

    def state_dict(self):
        return {"w": self.w.copy(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        self.w = state["w"].copy()
        self.rng.bit_generator.state = state["rng"]
