"""The trainer integrations on a tiny regression with real Trainers (skipped without the framework)."""

import csv
import math

import pytest
import torch
from forced import forced
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from rlsched import DynamicBatchSampler, HyperparamSpace
from rlsched.agents.controller import Controller

SPACE = HyperparamSpace(lr=(1e-3, 1.0), batch_size=(16, 32, 64), scale_rule="none")


def regression(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(n, generator=g)


# -- Lightning -------------------------------------------------------------------------------------
def lightning_setup():
    pl = pytest.importorskip("lightning.pytorch")
    from rlsched.integrations.lightning import AdaptiveSchedulerCallback

    class Regression(pl.LightningModule):
        def __init__(self, batch_size=16, train_size=256, sampler=None):
            super().__init__()
            self.batch_size, self.sampler = batch_size, sampler
            self.net = nn.Linear(4, 1)
            self.train_set = TensorDataset(*regression(train_size, 0))
            self.val_set = TensorDataset(*regression(64, 1))

        def train_dataloader(self):
            if self.sampler is not None:
                return DataLoader(self.train_set, batch_sampler=self.sampler)
            return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

        def val_dataloader(self):
            return DataLoader(self.val_set, batch_size=64)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.mse_loss(self.net(x).squeeze(-1), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", nn.functional.mse_loss(self.net(x).squeeze(-1), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    class Recorder(pl.Callback):
        """What each optimizer step ran at, next to what the controller had decided."""

        def __init__(self, driver):
            self.driver, self.lrs, self.sizes, self.vals = driver, [], [], []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.sizes.append(len(batch[0]))

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.lrs.append((optimizer.param_groups[0]["lr"], self.driver.scheduler.hparams.lr))

        def on_validation_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                self.vals.append(float(trainer.callback_metrics["val_loss"]))

    def fit(model, callback, tmp_path, ckpt_path=None, **trainer_args):
        recorder = Recorder(callback)
        trainer = pl.Trainer(
            accelerator="cpu",
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            logger=pl.loggers.CSVLogger(tmp_path, name="run") if tmp_path else False,
            log_every_n_steps=1,
            num_sanity_val_steps=0,
            callbacks=[callback, recorder],
            **trainer_args,
        )
        trainer.fit(model, ckpt_path=ckpt_path, **({"weights_only": True} if ckpt_path else {}))
        return trainer, recorder

    return Regression, AdaptiveSchedulerCallback, fit


def logged(tmp_path, key):
    (path,) = tmp_path.glob("run/*/metrics.csv")
    with open(path) as f:
        return [float(row[key]) for row in csv.DictReader(f) if row.get(key)]


def test_lightning_lr_follows_the_controller_and_val_loss_reaches_it(tmp_path):
    Regression, Callback, fit = lightning_setup()
    callback = Callback(SPACE, decisions=4, controller=forced(4, 2))  # LR x2 at every decision
    with pytest.warns(UserWarning, match="batch size stays at 16"):  # no way to change it: says so
        trainer, rec = fit(Regression(), callback, tmp_path, max_steps=12, val_check_interval=3)
    sched = callback.scheduler
    assert callback.batch_size_mode == "fixed" and sched.samples == 12 * 16 and sched.done
    # a decision every 48 examples (3 steps); each step ran at the controller's LR
    assert [lr for lr, _ in rec.lrs] == pytest.approx([0.01] * 3 + [0.02] * 3 + [0.04] * 3 + [0.08] * 3)
    assert all(used == decided for used, decided in rec.lrs)
    # each validation came right after an interval's last step, and its loss made that decision
    assert len(rec.vals) == 4 and len(sched.history) == 5
    assert [r.val_loss for r in sched.history[1:]] == pytest.approx(rec.vals)
    # logged after each step: the LR from then on (a step that ends an interval decides at once)
    assert logged(tmp_path, "sched/lr") == pytest.approx([lr for lr, _ in rec.lrs[1:]] + [0.08])
    assert logged(tmp_path, "sched/batch_size") == [16.0] * 12


def test_lightning_moves_a_batch_size_attribute_at_each_reload(tmp_path):
    Regression, Callback, fit = lightning_setup()
    model = Regression(batch_size=16, train_size=64)  # 4 steps an epoch
    callback = Callback(SPACE, budget_samples=256, decisions=2, controller=forced(2, 2))  # a rung up
    trainer, rec = fit(model, callback, tmp_path, max_epochs=50, reload_dataloaders_every_n_epochs=1)
    assert callback.batch_size_mode == "attribute"
    assert rec.sizes == [16] * 8 + [32] * 4  # decided after epoch 2, read by epoch 3's loader
    assert model.batch_size == 32 and trainer.current_epoch == 4  # stopped at the budget
    assert callback.scheduler.samples == 256 and len(rec.vals) == 4
    assert callback.scheduler.history[1].val_loss == pytest.approx(rec.vals[1])  # epoch 2's validation
    assert logged(tmp_path, "sched/batch_size") == [16.0] * 7 + [32.0] * 5


def test_lightning_moves_a_dynamic_batch_sampler_within_the_epoch(tmp_path):
    Regression, Callback, fit = lightning_setup()
    sampler = DynamicBatchSampler(256, batch_size=16, seed=0)
    callback = Callback(SPACE, budget_samples=600, decisions=3, controller=forced(2, 2))
    trainer, rec = fit(Regression(sampler=sampler), callback, tmp_path, max_steps=100, limit_val_batches=0)
    sched = callback.scheduler
    assert callback.batch_size_mode == "sampler" and sched.done
    assert sched.samples == sum(rec.sizes) and trainer.global_step == len(rec.sizes)  # every step fed
    assert set(rec.sizes) == {16, 32, 64} and rec.sizes[-1] == 64  # (16 also ends the first epoch)
    first = sched.history[1].samples // 16  # steps before the first decision
    assert first <= rec.sizes.index(32) <= first + 2  # a new size shows within two batches (prefetch)
    assert all(math.isfinite(r.val_loss) for r in sched.history)  # no validation: training loss


def test_lightning_runs_a_version_2_controllers_probe_then_follows_it(tmp_path):
    Regression, Callback, fit = lightning_setup()
    space = HyperparamSpace(lr=(1e-3, 0.1), batch_size=(4,))
    callback = Callback(space, decisions=3, controller=Controller())  # untrained version 2: probes first
    trainer, rec = fit(Regression(batch_size=4), callback, tmp_path, max_steps=240, limit_val_batches=0)
    sched = callback.scheduler
    assert sched.probe is not None and sched.done and len(sched.history) == 4
    probe_steps = sched.probe.samples // 4
    probe_lrs = [lr for lr, _ in rec.lrs[:probe_steps]]
    assert probe_lrs == sorted(probe_lrs) and probe_lrs[-1] / probe_lrs[0] > 10  # the range probe
    assert all(used == decided for used, decided in rec.lrs[probe_steps:])  # then the controller's LR
    assert all(math.isfinite(r.val_loss) for r in sched.history)


def test_lightning_resumes_the_schedule_from_a_checkpoint(tmp_path):
    """fit(ckpt_path=...) from mid-interval continues as the unbroken fit: the same LR at each step."""
    Regression, Callback, fit = lightning_setup()

    def callback():
        return Callback(SPACE, budget_samples=12 * 16, decisions=4, controller=forced(4, 2))

    space_warning = pytest.warns(UserWarning, match="batch size stays at 16")
    with space_warning:
        _, unbroken = fit(Regression(), callback(), None, max_steps=12, limit_val_batches=0)
    first = callback()
    with space_warning:
        trainer, _ = fit(Regression(), first, None, max_steps=5, limit_val_batches=0)  # mid-interval
    trainer.save_checkpoint(tmp_path / "five.ckpt")
    resumed = callback()
    with space_warning:
        _, rec = fit(
            Regression(), resumed, None, max_steps=12, limit_val_batches=0, ckpt_path=tmp_path / "five.ckpt"
        )
    assert resumed.scheduler.samples == 12 * 16 and resumed.scheduler.done
    assert len(resumed.scheduler.history) == len(first.scheduler.history) + 3  # decisions 2, 3 and 4
    assert rec.lrs == unbroken.lrs[5:]  # steps 6 to 12, each at the unbroken fit's LR


def test_lightning_says_what_is_wrong():
    Regression, Callback, fit = lightning_setup()

    class WithScheduler(Regression):
        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=0.01)
            return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, 1)]

    with pytest.raises(TypeError, match="space"):
        Callback((1e-3, 1.0))
    with pytest.raises(ValueError, match="remove the LR scheduler"):
        fit(WithScheduler(), Callback(SPACE), None, max_steps=2)


# -- Hugging Face transformers ---------------------------------------------------------------------
class Pairs(Dataset):
    def __init__(self, n, seed):
        self.x, self.y = regression(n, seed)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


class TinyRegressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(4, 1)

    def forward(self, x, labels=None):
        out = {"logits": self.net(x).squeeze(-1)}
        if labels is not None:
            out["loss"] = nn.functional.mse_loss(out["logits"], labels)
        return out


def hf_trainer(tmp_path, callback, **overrides):
    """A Trainer on the tiny regression, with ``callback``; returns it and the LR each step ran at
    (beside the LR the controller had decided)."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    used = []

    class Recorder(transformers.TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
            used.append((optimizer.param_groups[0]["lr"], callback.scheduler.hparams.lr))

    settings = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        max_steps=12,
        learning_rate=0.01,
        optim="sgd",
        lr_scheduler_type="linear",  # with a warmup: the controller's LR must win over both
        warmup_steps=3,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=3,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    args = transformers.TrainingArguments(**{**settings, **overrides})
    trainer = transformers.Trainer(
        model=TinyRegressor(),
        args=args,
        train_dataset=Pairs(256, 0),
        eval_dataset=Pairs(64, 1),
        callbacks=[callback, Recorder()],
    )
    return trainer, used


def hf_callback():
    from rlsched.integrations.transformers import AdaptiveSchedulerCallback

    return AdaptiveSchedulerCallback(SPACE, decisions=4, controller=forced(4, 2))


def test_transformers_lr_follows_the_controller_over_trainers_schedule(tmp_path):
    callback = hf_callback()
    trainer, used = hf_trainer(tmp_path, callback)
    with pytest.warns(UserWarning, match="batch size stays at 16") as caught:
        trainer.train()
    assert not [w for w in caught if "sets the LR" in str(w.message)]  # the scheduler saw no other LR
    sched = callback.scheduler
    assert sched.samples == 12 * 16 and sched.done
    assert [lr for lr, _ in used] == pytest.approx([0.01] * 3 + [0.02] * 3 + [0.04] * 3 + [0.08] * 3)
    assert all(lr == decided for lr, decided in used)
    history = trainer.state.log_history
    train_logs = [h for h in history if "loss" in h]
    assert [h["learning_rate"] for h in train_logs] == pytest.approx([lr for lr, _ in used])  # truthful
    assert [h["sched/batch_size"] for h in train_logs] == [16] * 12
    assert train_logs[-1]["sched/lr"] == pytest.approx(0.08)
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    assert len(evals) == 4 and [r.val_loss for r in sched.history[1:]] == pytest.approx(evals)


def test_transformers_resumes_the_schedule_from_a_checkpoint(tmp_path):
    """train(resume_from_checkpoint=...) from mid-interval runs each later step at the unbroken LR."""
    from rlsched.integrations.transformers import STATE_FILE

    saving = dict(save_strategy="steps", save_steps=5, eval_strategy="no")
    unbroken, used = hf_trainer(tmp_path, hf_callback(), **saving)
    with pytest.warns(UserWarning, match="batch size stays"):
        unbroken.train()
    assert (tmp_path / "checkpoint-5" / STATE_FILE).is_file()
    callback = hf_callback()
    resumed, used_after = hf_trainer(tmp_path, callback, **saving)
    with pytest.warns(UserWarning, match="batch size stays"):
        resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-5"))
    assert callback.scheduler.samples == 12 * 16 and callback.scheduler.done
    assert used_after == used[5:]  # steps 6 to 12, each at the LR of the unbroken run
    (tmp_path / "checkpoint-10" / STATE_FILE).unlink()  # a checkpoint saved without the callback
    restarted, _ = hf_trainer(tmp_path, hf_callback(), **saving)
    with pytest.warns(UserWarning, match="resumes at step 10 but .* does not exist; the controller starts"):
        restarted.train(resume_from_checkpoint=str(tmp_path / "checkpoint-10"))
