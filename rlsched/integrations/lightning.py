"""The learned controller in a Lightning ``Trainer``: a ``Callback`` that sets the LR every step.

    from lightning.pytorch import Trainer
    from rlsched import HyperparamSpace
    from rlsched.integrations.lightning import AdaptiveSchedulerCallback

    space = HyperparamSpace(lr=(1e-4, 1e-1), batch_size=(32, 64, 128, 256))
    trainer = Trainer(max_epochs=20, callbacks=[AdaptiveSchedulerCallback(space)],
                      reload_dataloaders_every_n_epochs=1)  # lets the batch size change each epoch
    trainer.fit(model, datamodule)  # model logs "val_loss"; datamodule.batch_size feeds train_dataloader

Needs ``pip install "rlsched[lightning]"``; works with ``lightning`` (``lightning.pytorch``) and,
where only that is installed, ``pytorch_lightning``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader

from rlsched.app.scheduler import AdaptiveScheduler
from rlsched.core.space import HyperparamSpace
from rlsched.integrations._common import BATCH_SIZE_TAG, LR_TAG, checked, fixed_batch_size, weighted_loss
from rlsched.train.sampler import DynamicBatchSampler

if importlib.util.find_spec("lightning") is not None:
    from lightning.pytorch import Callback, LightningModule, Trainer
    from lightning.pytorch.utilities import rank_zero_warn
    from lightning.pytorch.utilities.data import extract_batch_size
    from lightning.pytorch.utilities.parsing import lightning_getattr, lightning_hasattr, lightning_setattr
elif importlib.util.find_spec("pytorch_lightning") is not None:  # the package's older name
    from pytorch_lightning import Callback, LightningModule, Trainer
    from pytorch_lightning.utilities import rank_zero_warn
    from pytorch_lightning.utilities.data import extract_batch_size
    from pytorch_lightning.utilities.parsing import lightning_getattr, lightning_hasattr, lightning_setattr
else:
    raise ImportError(
        'rlsched.integrations.lightning needs Lightning: pip install "rlsched[lightning]" '
        "(or pytorch-lightning)"
    )

__all__ = ["AdaptiveSchedulerCallback"]


class AdaptiveSchedulerCallback(Callback):
    """Drives the trainer's LR, and its batch size where the data allows, with rlsched's controller.

    Every optimizer step feeds the training loss (from ``training_step``'s output) to an
    :class:`rlsched.AdaptiveScheduler`, which sets the LR of the optimizer's parameter groups at each
    of ``decisions`` points; after each validation the ``monitor`` metric of
    ``trainer.callback_metrics`` is reported to it. ``sched/lr`` and ``sched/batch_size`` are logged
    every step through ``pl_module.log`` (so to every logger the trainer has).

    Args:
        space: LR bounds and batch-size ladder; the optimizer's LR and the loader's batch size must
            lie in it.
        budget_samples: training examples in all (default: ``trainer.estimated_stepping_batches``
            times the examples of one step).
        decisions: how many times the controller acts.
        controller: ``"default"`` (shipped), a path to a saved controller, or a ``Controller``.
        monitor: the validation metric reported to the controller (logged by the model).
        batch_size_attr: the attribute ``train_dataloader()`` reads its batch size from, looked up
            as Lightning's batch-size finder does (the model, its ``hparams``, the datamodule).
        stop_at_budget: stop the trainer once ``budget_samples`` examples are trained.
        deterministic: act greedily (default) rather than sampling from the policy.

    The batch size moves in one of three ways, chosen at the first training batch:

    - the train loader is built on a :class:`rlsched.DynamicBatchSampler` (``batch_sampler=``):
      the scheduler sets it directly, and a new size shows up a batch later (Lightning prefetches one);
    - ``batch_size_attr`` is found and ``Trainer(reload_dataloaders_every_n_epochs=n)`` is set: the
      attribute is set, and the size changes when the loader is next rebuilt;
    - otherwise (or with ``accumulate_grad_batches > 1``) the batch size stays fixed, the controller
      adapts the LR only, and a warning says why, once (unless ``space``'s ladder is that size alone).

    The controller owns the LR: ``configure_optimizers`` must return one optimizer and no LR
    scheduler. ``scheduler`` is the AdaptiveScheduler once training runs, ``batch_size_mode`` one of
    ``"sampler"``, ``"attribute"``, ``"fixed"``.

    Lightning's checkpoints hold the scheduler's state (:meth:`state_dict`), so
    ``trainer.fit(model, ckpt_path=...)`` continues the controller's schedule where the checkpoint
    was taken, mid-interval or during the LR range probe, with the same budget and decisions.
    """

    def __init__(
        self,
        space: HyperparamSpace,
        *,
        budget_samples: int | None = None,
        decisions: int = 10,
        controller: Any = "default",
        monitor: str = "val_loss",
        batch_size_attr: str = "batch_size",
        stop_at_budget: bool = True,
        deterministic: bool = True,
    ) -> None:
        self.budget_samples = checked(space, budget_samples)
        self.space, self.decisions = space, int(decisions)
        self.controller, self.monitor, self.batch_size_attr = controller, monitor, batch_size_attr
        self.stop_at_budget, self.deterministic = stop_at_budget, deterministic
        self.scheduler: AdaptiveScheduler | None = None
        self.batch_size_mode: str | None = None
        self._sampler: DynamicBatchSampler | None = None
        self._parts: list[tuple[torch.Tensor, int]] = []  # micro-batches of the step being accumulated
        self._global_step = 0
        self._restored: dict[str, Any] | None = None  # a checkpoint's state, loaded at the first batch

    # -- set-up at the first batch ---------------------------------------------------------------
    def _optimizer(self, trainer: Trainer) -> torch.optim.Optimizer:
        if len(trainer.optimizers) != 1:
            raise ValueError(
                f"AdaptiveSchedulerCallback: configure_optimizers must return one optimizer, "
                f"got {len(trainer.optimizers)}"
            )
        if trainer.lr_scheduler_configs:
            raise ValueError(
                "AdaptiveSchedulerCallback: the controller sets the LR; remove the LR scheduler that "
                "configure_optimizers returns"
            )
        return trainer.optimizers[0]

    def _choose_sampler(self, trainer: Trainer, pl_module: LightningModule, batch: Any) -> tuple[str, str]:
        """How the batch size can move, and why it cannot where it stays fixed."""
        loader = trainer.train_dataloader
        sampler = loader.batch_sampler if isinstance(loader, DataLoader) else None
        accumulate = int(trainer.accumulate_grad_batches)
        why = ""
        if accumulate > 1:
            why = f"accumulate_grad_batches={accumulate} makes a step several batches"
        elif isinstance(sampler, DynamicBatchSampler):
            self._sampler = sampler
            return "sampler", ""
        elif not lightning_hasattr(pl_module, self.batch_size_attr):
            why = (
                f"the train loader is not built on a rlsched.DynamicBatchSampler and no "
                f"{self.batch_size_attr!r} attribute was found (model, its hparams or the datamodule)"
            )
        elif not trainer.reload_dataloaders_every_n_epochs:
            why = (
                f"{self.batch_size_attr!r} is only read when the train loader is rebuilt: pass "
                f"Trainer(reload_dataloaders_every_n_epochs=1)"
            )
        else:
            size = int(lightning_getattr(pl_module, self.batch_size_attr))
            self._sampler = DynamicBatchSampler(size, size)  # stands in for the loader; mirrored below
            return "attribute", ""
        size = extract_batch_size(batch) * accumulate
        self._sampler = DynamicBatchSampler(size, size)  # stands in for the loader; never iterated
        return "fixed", why

    def _start(self, trainer: Trainer, pl_module: LightningModule, batch: Any) -> None:
        optimizer = self._optimizer(trainer)
        self.batch_size_mode, why = self._choose_sampler(trainer, pl_module, batch)
        space = self.space
        if self.batch_size_mode == "fixed":
            space = fixed_batch_size(space, self._sampler.batch_size)
            if self.space.batch_size != space.batch_size:
                rank_zero_warn(
                    f"AdaptiveSchedulerCallback: the batch size stays at {self._sampler.batch_size} "
                    f"and the controller adapts the LR only: {why}"
                )
        budget = self.budget_samples
        if budget is None:
            steps = trainer.estimated_stepping_batches
            if steps == float("inf"):
                raise ValueError(
                    "budget_samples: the trainer has neither max_steps nor max_epochs; pass budget_samples"
                )
            budget = int(steps) * self._sampler.batch_size
        self.scheduler = AdaptiveScheduler(
            optimizer,
            self._sampler,
            controller=self.controller,
            space=space,
            budget_samples=budget,
            decisions=self.decisions,
            deterministic=self.deterministic,
            model=pl_module,
        )
        if self._restored is not None:
            self.scheduler.load_state_dict(self._restored)
            self._restored = None
        self._global_step = trainer.global_step
        self._push_batch_size(pl_module)

    def _push_batch_size(self, pl_module: LightningModule) -> None:
        """In "attribute" mode, the scheduler's batch size goes where train_dataloader() reads it."""
        if self.batch_size_mode != "attribute":
            return
        size = self._sampler.batch_size
        if lightning_getattr(pl_module, self.batch_size_attr) != size:
            lightning_setattr(pl_module, self.batch_size_attr, size)

    # -- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What Lightning saves in a checkpoint: the scheduler's state (tensors and Python scalars)."""
        if self.scheduler is None:
            return {} if self._restored is None else {"scheduler": self._restored}
        return {"scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep a checkpoint's state; the scheduler takes it at the first batch, once it exists."""
        self._restored = state_dict.get("scheduler")

    # -- the hooks -------------------------------------------------------------------------------
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.scheduler, self._sampler, self.batch_size_mode = None, None, None
        self._parts = []  # a new run: set up afresh at its first batch

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.scheduler is None:
            self._start(trainer, pl_module, batch)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.scheduler is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not isinstance(loss, torch.Tensor):
            raise ValueError(
                "AdaptiveSchedulerCallback: training_step must return the loss (a tensor, or a dict "
                f"with 'loss'), got {type(outputs).__name__}"
            )
        # Lightning divides the returned loss by accumulate_grad_batches; the controller wants the mean
        self._parts.append((loss.detach() * trainer.accumulate_grad_batches, extract_batch_size(batch)))
        if trainer.global_step == self._global_step:
            return  # still accumulating: no optimizer step yet
        self._global_step = trainer.global_step
        # The step's gradients are still in place (Lightning zeroes them before the next backward or a
        # validation). A step that ends an interval decides at once; a validation before the next
        # step decides again on its loss (AdaptiveScheduler.report).
        if not self.scheduler.done:
            loss, size = weighted_loss(self._parts)
            self.scheduler.step(loss, batch_size=size)
        self._parts = []
        self._push_batch_size(pl_module)
        lr, size = self.scheduler.get_last_lr()[0], self._sampler.batch_size
        pl_module.log_dict(
            {LR_TAG: lr, BATCH_SIZE_TAG: float(size)}, on_step=True, on_epoch=False, batch_size=size
        )
        if self.stop_at_budget and self.scheduler.done:
            trainer.should_stop = True

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.scheduler is None or trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            rank_zero_warn(
                f"AdaptiveSchedulerCallback: monitor={self.monitor!r} is not among the logged metrics "
                f"{sorted(trainer.callback_metrics)}; the controller decides on the training loss",
            )
            return
        self.scheduler.report(float(value))
        self._push_batch_size(pl_module)
