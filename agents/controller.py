"""The learned controller: a small actor-critic network over the TrainingEnv observation.

A ``Controller`` is itself an agent (each member acts on its own observation), an explorer for
PBT (``PBT(explore=Controller.load("default"))``: the hybrid, where the controller makes every
in-between adjustment and samples the explore step), and the policy that PPO trains.

>>> controller = Controller.load("default")
>>> import numpy as np
>>> controller.act(np.zeros(14, dtype=np.float32), deterministic=True).shape
(2,)
"""

from __future__ import annotations

import importlib.resources
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rlsched.core.actions import BATCH_STEPS, LR_FACTORS, apply_action
from rlsched.core.agent import Decision, MemberView, PopulationView
from rlsched.core.features import FEATURES, FEATURES_V2, OBSERVATION_V2, OBSERVATION_VERSION, observation_v2
from rlsched.core.files import atomic_write_bytes
from rlsched.core.prior import NEUTRAL, PRIOR_BATCH_MOVES, PRIOR_LR_FACTORS, act_on_prior, prior_lr
from rlsched.core.probe import PROBE_FRACTION, ProbeResult
from rlsched.core.space import Hyperparams, HyperparamSpace

CONTROLLER_FORMAT = "rlsched.controller/1"
NEUTRAL_BIAS = 1.5  # a new version-2 policy takes the neutral action with probability ~0.5 (LR), ~0.6 (batch)
DEFAULT_FILE = "default_controller.pt"


def _layer(inputs: int, outputs: int, gain: float = math.sqrt(2)) -> nn.Linear:
    layer = nn.Linear(inputs, outputs)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class ActorCritic(nn.Module):
    """Separate tanh MLPs for the policy (one categorical head per action dimension) and the value."""

    def __init__(self, observations: int, actions: tuple[int, ...], hidden: int = 64) -> None:
        super().__init__()
        self.actions = tuple(actions)
        self.critic = nn.Sequential(
            _layer(observations, hidden), nn.Tanh(), _layer(hidden, hidden), nn.Tanh(), _layer(hidden, 1, 1.0)
        )
        self.actor = nn.Sequential(
            _layer(observations, hidden),
            nn.Tanh(),
            _layer(hidden, hidden),
            nn.Tanh(),
            _layer(hidden, sum(actions), 0.01),
        )

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    def dists(self, obs: torch.Tensor) -> list[torch.distributions.Categorical]:
        logits = torch.split(self.actor(obs), self.actions, dim=-1)
        return [torch.distributions.Categorical(logits=lg) for lg in logits]

    def evaluate(
        self, obs: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probability and entropy of ``action`` (summed over dimensions) and the value."""
        dists = self.dists(obs)
        action = action.reshape(len(obs), len(self.actions))
        logp = sum(d.log_prob(action[:, k]) for k, d in enumerate(dists))
        entropy = sum(d.entropy() for d in dists)
        return logp, entropy, self.value(obs)


VERSIONS = {  # observation version -> its features, LR factors and batch moves
    OBSERVATION_VERSION: (FEATURES, LR_FACTORS, BATCH_STEPS),
    OBSERVATION_V2: (FEATURES_V2, PRIOR_LR_FACTORS, PRIOR_BATCH_MOVES),
}


class Controller:
    """Maps an observation to a MultiDiscrete ``[lr_index, batch_index]`` action.

    Version 2 (the default) asks the runner for an LR range probe (``probe_fraction`` of the
    budget) and acts relative to the prior schedule built on it (:mod:`rlsched.core.prior`);
    version 1 acts on the job's own starting point by x0.5..x2 per decision. ``metadata``
    records the version, features, action set and how the controller was trained.
    """

    def __init__(
        self, net: ActorCritic | None = None, metadata: dict[str, Any] | None = None, *, version: int = 2
    ) -> None:
        version = int((metadata or {}).get("observation_version", version))
        if version not in VERSIONS:
            raise ValueError(f"observation_version: expected one of {sorted(VERSIONS)}, got {version!r}")
        features, lr_factors, batch_moves = VERSIONS[version]
        self.version = version
        if net is None:
            net = ActorCritic(len(features), (len(lr_factors), len(batch_moves)))
            if version == OBSERVATION_V2:  # start as the prior: the neutral action is the likeliest
                with torch.no_grad():
                    net.actor[-1].bias[NEUTRAL[0]] = NEUTRAL_BIAS
                    net.actor[-1].bias[len(lr_factors) + NEUTRAL[1]] = NEUTRAL_BIAS
        self.net = net
        self.metadata = {
            "observation_version": version,
            "features": list(features),
            "lr_factors": list(lr_factors),
            "batch_steps": list(batch_moves),
            **(metadata or {}),
        }
        self.name = "controller"

    def __getattr__(self, name: str) -> Any:
        if name == "probe_fraction" and self.__dict__.get("version") == OBSERVATION_V2:
            return PROBE_FRACTION  # a version-2 controller is a Probing agent
        raise AttributeError(name)

    # -- acting --------------------------------------------------------------------------------
    @torch.no_grad()
    def probabilities(self, obs: np.ndarray) -> list[np.ndarray]:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32)).reshape(1, -1)
        return [d.probs[0].numpy().astype(np.float64) for d in self.net.dists(x)]

    def act(
        self, obs: np.ndarray, *, deterministic: bool = False, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """An action: the most likely one, or sampled with ``rng`` (a fresh generator if None)."""
        probs = self.probabilities(obs)
        if deterministic:
            return np.array([int(np.argmax(p)) for p in probs], dtype=np.int64)
        rng = rng or np.random.default_rng()
        return np.array(
            [int(min(np.searchsorted(np.cumsum(p), rng.random()), len(p) - 1)) for p in probs], dtype=np.int64
        )

    def observe(self, view: PopulationView) -> None:
        pass  # the policy is fixed while it acts

    def adjust(
        self, member: MemberView, view: PopulationView, rng: np.random.Generator, deterministic: bool = True
    ) -> Hyperparams:
        """The member's next hyperparameters: the policy's action on its observation."""
        action = self.act(self.observation(member, view), deterministic=deterministic, rng=rng)
        return self.apply(action, member.hparams, member, view)

    def observation(self, member: MemberView, view: PopulationView) -> np.ndarray:
        """The member's observation in this controller's version."""
        if self.version == OBSERVATION_VERSION:
            return member.observation
        probe, history = self._probe(member), member.history
        d = max(view.decision - 1, 0)  # the interval the member's hyperparameters were in effect for
        base = history[0].hparams
        prior = prior_lr(probe.peak_lr, base, member.hparams.batch_size, view.space, d, view.decisions)
        rank = float(member.observation[FEATURES.index("population_rank")])
        return observation_v2(history, probe=probe, prior=prior, progress=view.progress, rank=rank)

    def apply(self, action: Any, hp: Hyperparams, member: MemberView, view: PopulationView) -> Hyperparams:
        """The hyperparameters after ``action`` from ``hp`` (the member's, or a donor's to explore)."""
        if self.version == OBSERVATION_VERSION:
            return apply_action(view.space, hp, action)
        return act_on_prior(
            action,
            hp=hp,
            peak=self._probe(member).peak_lr,
            base=member.history[0].hparams,
            stats=member.history[-1].stats,
            space=view.space,
            decision=view.decision,
            decisions=view.decisions,
        )

    @staticmethod
    def _probe(member: MemberView) -> ProbeResult:
        if member.probe is None:
            raise ValueError(
                "controller: a version-2 controller needs the LR range probe; run it through "
                "rlsched.run (which probes for it) or AdaptiveScheduler"
            )
        return member.probe

    # -- as an agent (population 1 or more, each member on its own) ------------------------------
    def initial(
        self,
        population: int,
        space: HyperparamSpace,
        initial: Hyperparams,
        decisions: int,
        rng: np.random.Generator,
    ) -> list[Hyperparams]:
        return [initial] * population

    def decide(self, view: PopulationView, rng: np.random.Generator) -> list[Decision]:
        return [Decision(self.adjust(m, view, rng)) for m in view.members]

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def config(self) -> dict[str, Any]:
        return {"type": "Controller", "path": self.metadata.get("path", "default")}

    # -- as PBT's explorer (the hybrid) -------------------------------------------------------
    def explore(
        self, hp: Hyperparams, view: PopulationView, rng: np.random.Generator, donor: MemberView
    ) -> tuple[Hyperparams, list[str]]:
        """A sampled action on the donor's observation: diversity from the policy itself."""
        action = self.act(self.observation(donor, view), deterministic=False, rng=rng)
        new = self.apply(action, hp, donor, view)
        factor, move = self.metadata["lr_factors"][action[0]], self.metadata["batch_steps"][action[1]]
        batch = f"batch step {move:+d}" if self.version == OBSERVATION_VERSION else f"batch {move}"
        return new, [
            f"controller sampled lr x{factor:g}, {batch}: "
            f"lr {hp.lr:.4g} -> {new.lr:.4g}, batch_size {hp.batch_size} -> {new.batch_size}"
        ]

    # -- files ---------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """A plain dict of tensors and metadata, written atomically."""
        state = {"format": CONTROLLER_FORMAT, "state_dict": self.net.state_dict(), "metadata": self.metadata}
        atomic_write_bytes(Path(path), lambda f: torch.save(state, f))

    @classmethod
    def load(cls, path: str | Path = "default") -> Controller:
        """Load a saved controller (``"default"``: the one shipped in the package); weights only."""
        if str(path) == "default":
            source = importlib.resources.files("rlsched.agents").joinpath(DEFAULT_FILE)
            with importlib.resources.as_file(source) as file:
                controller = cls._read(Path(file))
            controller.metadata["path"] = "default"
            return controller
        controller = cls._read(Path(path))
        controller.metadata["path"] = str(path)
        return controller

    @classmethod
    def _read(cls, path: Path) -> Controller:
        if not path.is_file():
            raise ValueError(f"controller: no such file {str(path)!r}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ValueError(
                f"controller: {path} is not a readable controller file ({str(error)[:120]})"
            ) from None
        if not isinstance(state, dict) or state.get("format") != CONTROLLER_FORMAT:
            raise ValueError(
                f"controller: {path} is not an rlsched controller (expected format {CONTROLLER_FORMAT!r})"
            )
        meta, weights = state.get("metadata"), state.get("state_dict")
        if not isinstance(meta, dict) or not isinstance(weights, dict):
            raise ValueError(f"controller: {path} lacks its metadata or state_dict table")
        bad = next((k for k, v in weights.items() if not isinstance(v, torch.Tensor)), None)
        bad = bad or next((k for k, v in weights.items() if not torch.isfinite(v).all()), None)
        if bad is not None:  # a NaN weight would act at random mid-run; refuse it before anything runs
            raise ValueError(f"controller: {path} has a non-finite or non-tensor weight {bad!r}; retrain it")
        version = meta.get("observation_version")
        if version not in VERSIONS:
            raise ValueError(
                f"controller: {path} expects observation version {version!r}, "
                f"this rlsched makes versions {sorted(VERSIONS)}"
            )
        features, lr_factors, batch_moves = VERSIONS[version]
        if list(meta.get("lr_factors", [])) != list(lr_factors) or list(meta.get("batch_steps", [])) != list(
            batch_moves
        ):
            raise ValueError(
                f"controller: {path} was trained for actions lr x{meta.get('lr_factors')}, batch steps "
                f"{meta.get('batch_steps')}; version {version} uses {list(lr_factors)}, {list(batch_moves)}"
            )
        controller = cls(metadata=meta)
        try:
            controller.net.load_state_dict(weights)
        except RuntimeError as error:  # missing, unexpected or wrongly shaped weights
            reason = str(error).strip().splitlines()[0][:160]
            raise ValueError(f"controller: {path} does not fit this rlsched's network ({reason})") from None
        return controller
