"""The learned controller in a Hugging Face ``Trainer``: a ``TrainerCallback`` that sets the LR.

    from transformers import Trainer, TrainingArguments
    from rlsched import HyperparamSpace
    from rlsched.integrations.transformers import AdaptiveSchedulerCallback

    callback = AdaptiveSchedulerCallback(HyperparamSpace(lr=(1e-5, 1e-3)))
    args = TrainingArguments("out", learning_rate=1e-4, lr_scheduler_type="constant",
                             eval_strategy="steps", eval_steps=100)
    Trainer(model, args, train_dataset=train, eval_dataset=val, callbacks=[callback]).train()

Needs ``pip install "rlsched[transformers]"``.

How it shares the LR with Trainer's own LR scheduler: in each step Trainer calls
``optimizer.step()``, ``on_optimizer_step``, ``lr_scheduler.step()``, zeroes the gradients, then
``on_step_end``, logs and evaluates. The callback feeds the step to the controller in
``on_optimizer_step`` (the gradients are still there; a step that ends an interval decides at once,
and an evaluation in the same step decides again on its ``eval_loss``), and in ``on_step_end``
writes the controller's LR back over whatever the LR scheduler just set, so the next step always
runs at the controller's LR, whatever ``lr_scheduler_type`` says (``"constant"`` is the natural
choice; a warmup is undone).
Trainer logs ``learning_rate`` from its scheduler's ``get_last_lr()``, so the callback keeps that in
step too: the logged ``learning_rate`` is the LR each step really ran at.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from rlsched.app.scheduler import AdaptiveScheduler
from rlsched.core.files import load_checkpoint, save_checkpoint
from rlsched.core.space import HyperparamSpace
from rlsched.integrations._common import BATCH_SIZE_TAG, LR_TAG, checked, fixed_batch_size, weighted_loss
from rlsched.train.sampler import DynamicBatchSampler

__all__ = ["STATE_FILE", "AdaptiveSchedulerCallback"]

STATE_FILE = "rlsched_scheduler.pt"  # the scheduler's state, in each of Trainer's checkpoint folders


def _unwrap(obj: Any, inner: type) -> Any:
    """The object accelerate wraps (its ``.optimizer`` / ``.scheduler``), or ``obj`` itself."""
    for name in ("optimizer", "scheduler"):
        wrapped = getattr(obj, name, None)
        if isinstance(wrapped, inner):
            return wrapped
    return obj


def _first_dim(args: tuple, kwargs: dict[str, Any]) -> int:
    for value in (*kwargs.values(), *args):
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return int(value.shape[0])
    raise ValueError("AdaptiveSchedulerCallback: found no tensor input to count the batch's examples")


class AdaptiveSchedulerCallback(TrainerCallback):
    """Drives the ``Trainer``'s LR with rlsched's controller; the batch size stays as Trainer's.

    Each optimizer step feeds the step's training loss (the ``loss`` of the model's output, as
    Trainer reads it) to an :class:`rlsched.AdaptiveScheduler`; each evaluation reports ``monitor``
    from its metrics; at each of ``decisions`` points the controller's LR goes into every parameter
    group (keeping their ratios) and stays there, over Trainer's LR scheduler (see the module doc).
    Training logs get ``sched/lr`` and ``sched/batch_size`` (also in ``state.log_history``).

    Args:
        space: LR bounds; ``args.learning_rate`` must lie in them. Trainer builds its train loader
            once, so the batch size stays at ``per_device_train_batch_size x
            gradient_accumulation_steps`` examples a step and the ladder is not used (a warning
            says so once if it has other sizes).
        budget_samples: training examples in all (default: ``state.max_steps`` steps).
        decisions: how many times the controller acts.
        controller: ``"default"`` (shipped), a path to a saved controller, or a ``Controller``.
        monitor: the evaluation metric reported to the controller.
        stop_at_budget: stop training once ``budget_samples`` examples are trained.
        deterministic: act greedily (default) rather than sampling from the policy.

    The model's forward must return its loss (``{"loss": ...}`` or an output with ``.loss``), as
    Trainer's default ``compute_loss`` expects. ``scheduler`` is the AdaptiveScheduler once training
    runs. One process: each process of a distributed run would decide on its own.

    Each checkpoint Trainer saves gets the scheduler's state as ``rlsched_scheduler.pt`` in its
    folder, so ``trainer.train(resume_from_checkpoint=...)`` continues the controller's schedule
    where it was. The state is looked up in ``<output_dir>/checkpoint-<step>``, the folder Trainer
    saved at that step; a checkpoint without it (saved without the callback, or moved elsewhere)
    gets a warning, and the controller starts afresh at that step.
    """

    def __init__(
        self,
        space: HyperparamSpace,
        *,
        budget_samples: int | None = None,
        decisions: int = 10,
        controller: Any = "default",
        monitor: str = "eval_loss",
        stop_at_budget: bool = True,
        deterministic: bool = True,
    ) -> None:
        self.budget_samples = checked(space, budget_samples)
        self.space, self.decisions = space, int(decisions)
        self.controller, self.monitor = controller, monitor
        self.stop_at_budget, self.deterministic = stop_at_budget, deterministic
        self.scheduler: AdaptiveScheduler | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._lrs: list[float] = []  # the LR of every group, as the controller set it
        self._parts: list[tuple[torch.Tensor, int]] = []  # this step's micro-batches: (loss, examples)
        # the model scaled each micro-batch's loss to the whole step (Trainer's num_items_in_batch)
        self._summed = False
        self._hook: torch.utils.hooks.RemovableHandle | None = None

    # -- hooks -----------------------------------------------------------------------------------
    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: torch.nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        lr_scheduler: Any = None,
        **kwargs: Any,
    ) -> None:
        optimizer = self._optimizer = _unwrap(optimizer, torch.optim.Optimizer)
        for group in optimizer.param_groups:  # a warmup starts at LR 0; the controller starts at the set LR
            group["lr"] = group.get("initial_lr", group["lr"])
        size = args.train_batch_size * args.gradient_accumulation_steps
        if len(self.space.batch_size) > 1 or self.space.batch_size[0] != size:
            warnings.warn(
                f"AdaptiveSchedulerCallback: the batch size stays at {size} examples a step (Trainer "
                f"builds its train loader once); the controller adapts the LR only",
                stacklevel=2,
            )
        self.scheduler = AdaptiveScheduler(
            optimizer,
            DynamicBatchSampler(size, size),  # stands in for Trainer's loader; never iterated
            controller=self.controller,
            space=fixed_batch_size(self.space, size),
            budget_samples=self.budget_samples or state.max_steps * size,
            decisions=self.decisions,
            deterministic=self.deterministic,
            model=model,
        )
        if state.global_step > 0:  # train(resume_from_checkpoint=...): Trainer restored its state
            self._resume(args, state)
        self._parts = []
        if self._hook is not None:
            self._hook.remove()
        self._hook = model.register_forward_hook(self._capture_loss, with_kwargs=True)
        self._record_lr(lr_scheduler)

    def on_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ):
        if not self._parts:
            raise ValueError(
                "AdaptiveSchedulerCallback: the model's forward returned no loss; return {'loss': ...} "
                "(or an output with .loss), as Trainer's default compute_loss expects"
            )
        if self._summed:
            loss, size = sum(p[0].detach().double() for p in self._parts), sum(p[1] for p in self._parts)
        else:
            loss, size = weighted_loss(self._parts)
        self._parts = []
        if not self.scheduler.done:
            self.scheduler.step(loss, batch_size=size)  # it decides at once when an interval ends
        # the LR range probe's next LR, if it runs; Trainer reads get_last_lr() for this step's log
        # next, so the LR scheduler is told only in on_step_end
        self._lrs = self.scheduler.get_last_lr()

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        lr_scheduler: Any = None,
        **kwargs: Any,
    ) -> TrainerControl:
        self._restore_lr()
        self._record_lr(lr_scheduler)
        if self.stop_at_budget and self.scheduler.done:
            control.should_training_stop = True
        return control

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        lr_scheduler: Any = None,
        **kwargs: Any,
    ) -> None:
        if self.scheduler is None:
            return  # an evaluation outside train()
        value = (metrics or {}).get(self.monitor)
        if value is None:
            warnings.warn(
                f"AdaptiveSchedulerCallback: monitor={self.monitor!r} is not among the evaluation "
                f"metrics {sorted(metrics or {})}; the controller decides on the training loss",
                stacklevel=2,
            )
            return
        # right after an interval's last step, the controller takes that decision again on this loss
        self.scheduler.report(float(value))
        self._record_lr(lr_scheduler)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if self.scheduler is None or logs is None or "loss" not in logs:
            return  # only training logs
        extra = {LR_TAG: self._lrs[0], BATCH_SIZE_TAG: self.scheduler.hparams.batch_size}
        logs.update(extra)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(extra)  # Trainer stored its copy before calling us

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        """Trainer has just saved ``checkpoint-<step>``: the scheduler's state goes beside it."""
        folder = self._checkpoint(args, state)
        if self.scheduler is not None and args.should_save and folder.is_dir():
            save_checkpoint(folder / STATE_FILE, self.scheduler.state_dict())

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    # -- inside ----------------------------------------------------------------------------------
    @staticmethod
    def _checkpoint(args: TrainingArguments, state: TrainerState) -> Path:
        return Path(args.output_dir) / f"checkpoint-{state.global_step}"

    def _resume(self, args: TrainingArguments, state: TrainerState) -> None:
        path = self._checkpoint(args, state) / STATE_FILE
        if not path.is_file():
            warnings.warn(
                f"AdaptiveSchedulerCallback: training resumes at step {state.global_step} but {path} "
                f"does not exist; the controller starts afresh at this step",
                stacklevel=3,
            )
            return
        self.scheduler.load_state_dict(load_checkpoint(path))

    def _capture_loss(
        self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any], output: Any
    ) -> None:
        if not module.training or not torch.is_grad_enabled():
            return  # evaluation and prediction
        loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
        if isinstance(loss, torch.Tensor):
            self._summed = kwargs.get("num_items_in_batch") is not None
            self._parts.append((loss.detach(), _first_dim(args, kwargs)))

    def _restore_lr(self) -> None:
        """Write the controller's LR back over the one Trainer's LR scheduler just set."""
        for group, lr in zip(self._optimizer.param_groups, self._lrs):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr

    def _record_lr(self, lr_scheduler: Any) -> None:
        """Take the LR the next step runs at (a decision may have just set it) and tell Trainer."""
        self._lrs = self.scheduler.get_last_lr()
        inner = _unwrap(lr_scheduler, torch.optim.lr_scheduler.LRScheduler)
        if isinstance(inner, torch.optim.lr_scheduler.LRScheduler):
            # Trainer logs learning_rate from get_last_lr(), which torch's schedulers answer from
            # _last_lr: keep it equal to the LR the next step runs at
            inner._last_lr = list(self._lrs)
