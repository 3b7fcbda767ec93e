"""The training loop: AdamW, gradient clipping, LR schedule, EMA, early stopping, checkpoints.

Checkpoints are written atomically (temporary file, fsync, rename), so a crash or ``kill -9`` at
any moment leaves the previous one intact. They hold the model, EMA, optimizer, scheduler and RNG
states and the metric history; ``resume`` continues so that an interrupted run ends where an
uninterrupted one would (the batch order of epoch ``e`` depends only on ``(seed, e)``).

With ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in ``DistributedDataParallel``
(NCCL on GPU, gloo on CPU); each rank takes every ``world_size``-th batch and rank 0 writes files.
"""

import contextlib
import csv
import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from .. import keys
from ..config import ModelConfig
from ..export import export_model
from ..model import AttnMACE, build_model, copy_weights, count_parameters
from .checkpoint import write_snapshot
from .evaluate import compute_metrics, predict
from .graphs import FORCES_MASK, STRESS_MASK, collate_graphs, split_by_atoms
from .loss import LossWeights, compute_loss, loss_norms

log = logging.getLogger("attnmace.train")


#: the update count assumed for checkpoints written before the EMA warm-up: its decay is the full one
_WARM_EMA = 10**9


@dataclass
class TrainSettings:
    """Optimisation settings (all have command-line flags)."""

    max_epochs: int = 200
    batch_size: int = 8
    valid_batch_size: int = 16
    lr: float = 5e-3
    weight_decay: float = 5e-7
    clip_grad: float = 10.0
    scheduler: str = "plateau"  # "plateau" | "cosine" | "none"
    plateau_factor: float = 0.8
    plateau_patience: int = 5
    ema_decay: float = 0.99  # 0 disables the EMA
    patience: int = 30  # early stopping: epochs without validation improvement
    energy_weight: float = 1.0
    forces_weight: float = 10.0
    stress_weight: float = 1.0
    huber_delta: float = 0.0
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    max_steps_per_epoch: int = 0  # > 0: cap (quick tests)
    max_hours: float = 0.0  # > 0: no epoch is started that would end after this much wall time
    snapshot_every: int = 0  # > 0: keep the EMA weights of every n-th epoch in snapshots/
    max_atoms_per_pass: int = 0  # > 0: batches pass through the model in parts of at most this many atoms
    extra: Dict[str, Any] = field(default_factory=dict)


#: Settings that change what the validation loss measures.
_LOSS_SETTINGS = ("energy_weight", "forces_weight", "stress_weight", "huber_delta")


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, fsync, then rename over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _rng_state() -> Dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


class Trainer:
    """Fits an :class:`AttnMACE` model to a training set, validating on a validation set.

    Args:
        model: the model to train (normalisation statistics already set).
        train_set: a :class:`~attnmace.train.graphs.GraphDataset`.
        valid_set: a :class:`~attnmace.train.graphs.GraphDataset`.
        settings: optimisation settings.
        output_dir: where checkpoint, model, metrics and plots go.
        valid_config_types: ``config_type`` of each validation frame (per-type metrics).
    """

    def __init__(
        self,
        model: AttnMACE,
        train_set,
        valid_set,
        settings: TrainSettings,
        output_dir,
        valid_config_types: Optional[List[str]] = None,
    ):
        self.settings = s = settings
        self.device = torch.device(s.device)
        self.dtype = getattr(torch, s.dtype)
        self.model = model.to(device=self.device, dtype=self.dtype).train()
        self.ema = None
        self.ema_updates = 0  # steps averaged so far: the decay warms up over the first ones
        if s.ema_decay > 0:
            self.ema = copy_weights(self.model, build_model(config=model.config, dtype=self.dtype).to(self.device))
        self.train_set, self.valid_set = train_set, valid_set
        self.valid_config_types = valid_config_types
        self.output_dir = Path(output_dir)
        self.loss_weights = LossWeights(s.energy_weight, s.forces_weight, s.stress_weight, s.huber_delta)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=s.lr, weight_decay=s.weight_decay, amsgrad=True)
        if s.scheduler == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, factor=s.plateau_factor, patience=s.plateau_patience
            )
        elif s.scheduler == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max(s.max_epochs, 1))
        elif s.scheduler == "none":
            self.scheduler = None
        else:
            raise ValueError(f"scheduler must be 'plateau', 'cosine' or 'none', got {s.scheduler!r}")
        self.ddp = None
        if _world() > 1:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.epoch = 0  # epochs completed
        self.best_valid = math.inf
        self.bad_epochs = 0
        self.history: List[Dict[str, float]] = []

    # ----------------------------------------------------------------- state
    @property
    def checkpoint_path(self) -> Path:
        return self.output_dir / "checkpoint.pt"

    def state_dict(self) -> Dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "ema_updates": self.ema_updates,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": self.epoch,
            "best_valid": self.best_valid,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "rng": _rng_state(),
            "settings": asdict(self.settings),
            "model_config": self.model.config.to_dict(),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        # a checkpoint from before the warm-up was past it: the full decay, as it was trained with
        self.ema_updates = int(state.get("ema_updates", _WARM_EMA))
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = state["epoch"]
        self.best_valid = state["best_valid"]
        self.bad_epochs = state["bad_epochs"]
        self.history = state["history"]
        saved = state.get("settings") or {}
        changed = {
            k: (saved[k], getattr(self.settings, k))
            for k in _LOSS_SETTINGS
            if k in saved and saved[k] != getattr(self.settings, k)
        }
        if changed:
            # a validation loss under other weights is not comparable with the new ones
            log.warning(
                "loss settings differ from the checkpoint's (%s): the best validation loss and the "
                "plateau counts start afresh",
                ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items()),
            )
            self.best_valid = math.inf
            self.bad_epochs = 0
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.best = self.scheduler.mode_worse
                self.scheduler.num_bad_epochs = 0
        if "lr" in saved and saved["lr"] != self.settings.lr:
            # an explicit new learning rate wins over the optimizer's and the scheduler's saved one
            log.warning(
                "learning rate differs from the checkpoint's (%g -> %g): using %g",
                saved["lr"],
                self.settings.lr,
                self.settings.lr,
            )
            for group in self.optimizer.param_groups:
                group["lr"] = self.settings.lr
                group["initial_lr"] = self.settings.lr
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.num_bad_epochs = 0
                self.scheduler._last_lr = [self.settings.lr for _ in self.optimizer.param_groups]
            elif self.scheduler is not None:
                self.scheduler.base_lrs = [self.settings.lr for _ in self.optimizer.param_groups]
        _set_rng_state(state["rng"])

    def resume(self) -> bool:
        """Load ``checkpoint.pt`` from the output directory; False if there is none."""
        if not self.checkpoint_path.is_file():
            return False
        state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=False)
        saved = ModelConfig.from_dict(state["model_config"])  # fields added since take their defaults
        if saved != self.model.config:
            here, there = self.model.config.to_dict(), saved.to_dict()
            differ = {k: there[k] for k in here if here[k] != there[k]}
            raise ValueError(f"{self.checkpoint_path} was written for another model configuration: {differ}")
        self.load_state_dict(state)
        log.info("resumed from %s after epoch %d", self.checkpoint_path, self.epoch)
        return True

    # ----------------------------------------------------------------- loop
    def _batches(self, epoch: int) -> List[List[int]]:
        s = self.settings
        order = np.random.default_rng([s.seed, epoch]).permutation(len(self.train_set))
        batches = [order[i : i + s.batch_size].tolist() for i in range(0, len(order), s.batch_size)]
        if s.max_steps_per_epoch > 0:
            batches = batches[: s.max_steps_per_epoch * _world()]
        if _world() > 1:  # every rank must take the same number of steps (gradient all-reduce)
            batches = batches[: max(len(batches) // _world(), 1) * _world()]
        return batches[_rank() :: _world()]

    def _to_device(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in batch.items()}

    def _train_epoch(self, epoch: int) -> Dict[str, float]:
        net = self.ddp if self.ddp is not None else self.model
        self.model.train()
        sums = {"loss": 0.0, "e_sq": 0.0, "f_sq": 0.0, "frames": 0.0, "comps": 0.0}
        batches = self._batches(epoch)
        bar = tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=_rank() != 0 or not batches, unit="batch")
        for idx in bar:
            total = self._train_step(net, idx, sums)
            sums["loss"] += total * len(idx)
            sums["frames"] += len(idx)
            bar.set_postfix(loss=f"{total:.4g}")
        if _world() > 1:
            t = torch.tensor([sums[k] for k in sorted(sums)], dtype=torch.float64, device=self.device)
            dist.all_reduce(t)
            sums = dict(zip(sorted(sums), t.tolist()))
        frames = max(sums["frames"], 1.0)
        return {
            "train_loss": sums["loss"] / frames,
            "train_energy_rmse_meV_per_atom": 1e3 * math.sqrt(sums["e_sq"] / frames),
            "train_forces_rmse_meV_per_A": (
                1e3 * math.sqrt(sums["f_sq"] / sums["comps"]) if sums["comps"] > 0 else float("nan")
            ),
        }

    def _train_step(self, net: torch.nn.Module, idx: List[int], sums: Dict[str, float]) -> float:
        """One optimizer step on the batch of training frames ``idx``; returns its loss and adds its
        squared errors to ``sums``.

        With ``max_atoms_per_pass`` the batch goes through the model in parts and their gradients
        accumulate. Each part's loss is divided by the whole batch's weights, so the parts' losses
        and gradients add up to the whole batch's.
        """
        s = self.settings
        groups = split_by_atoms([self.train_set[i] for i in idx], s.max_atoms_per_pass)
        batches = [self._to_device(collate_graphs(group)) for group in groups]
        norms = loss_norms(*batches)
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for k, batch in enumerate(batches):
            # with DDP the gradients are all-reduced once, after the last part's backward pass
            last = k == len(batches) - 1
            with contextlib.nullcontext() if self.ddp is None or last else self.ddp.no_sync():
                out = net(batch, compute_forces=True, compute_stress=bool(batch[STRESS_MASK].sum() > 0))
                parts = compute_loss(out, batch, self.loss_weights, norms)
                if not torch.isfinite(parts["total"]):
                    self._diverged(f"the loss is {float(parts['total'].detach())}", idx)
                parts["total"].backward()
            with torch.no_grad():
                n = batch["num_atoms"]
                total += float(parts["total"])
                sums["e_sq"] += float((((out[keys.ENERGY] - batch["ref_energy"]) / n) ** 2).sum())
                has = batch[FORCES_MASK].index_select(0, batch[keys.BATCH]).unsqueeze(-1)  # energy-only: 0
                sums["f_sq"] += float((has * (out[keys.FORCES] - batch["ref_forces"]) ** 2).sum())
                sums["comps"] += 3.0 * float(has.sum())
            del out, parts  # free this part's graph before the next one is built
        if s.clip_grad > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.clip_grad)
            if not torch.isfinite(norm):
                self._diverged(f"the gradient norm is {float(norm)}", idx)
        self.optimizer.step()
        self._update_ema()
        return total

    def _diverged(self, what: str, idx: List[int]) -> None:
        """Stop training on a non-finite loss or gradient, before the weights take it: the last
        checkpoint (the previous epoch's) stays as it was."""
        saved = f"{self.checkpoint_path} holds epoch {self.epoch}" if self.epoch else "no epoch was saved"
        raise FloatingPointError(
            f"training diverged in epoch {self.epoch + 1}: {what} on the batch of training frames "
            f"{sorted(idx)[:8]}{' ...' if len(idx) > 8 else ''} ({saved}). Try a lower --lr, "
            "--dtype float64, or check those frames' labels"
        )

    def _warm_up(self) -> None:
        """One discarded forward/backward pass before training.

        The first backward pass of a process rounds differently (at 1e-17) from later ones on CPU;
        doing one first makes a resumed run bitwise equal to an uninterrupted one. No state changes:
        no optimizer step, gradients are discarded.
        """
        if len(self.train_set) == 0:
            return
        batch = self._to_device(collate_graphs([self.train_set[0]]))
        out = self.model(batch, compute_forces=True, compute_stress=bool(batch[STRESS_MASK].sum() > 0))
        compute_loss(out, batch, self.loss_weights)["total"].backward()
        self.optimizer.zero_grad(set_to_none=True)

    def _out_of_time(self, mine: bool) -> bool:
        """Whether any rank's clock says the next epoch would end after the limit (all ranks stop
        together, so none waits for the others' gradients)."""
        if _world() == 1:
            return mine
        flag = torch.tensor([1.0 if mine else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def ema_decay_now(self) -> float:
        """The decay of the next EMA update: ``min(ema_decay, (1 + n) / (10 + n))`` after ``n``
        updates (as TensorFlow's and MACE's EMA with the update count), so that the averaged
        weights follow training from the first steps instead of keeping most of the random
        initialisation for the first few hundred (0.99⁴⁰⁰ ≈ 0.018)."""
        n = self.ema_updates
        return min(self.settings.ema_decay, (1.0 + n) / (10.0 + n))

    def _update_ema(self) -> None:
        if self.ema is None:
            return
        decay = self.ema_decay_now()
        self.ema_updates += 1
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.model.parameters()):
                e.mul_(decay).add_(p.detach(), alpha=1.0 - decay)

    def eval_model(self) -> AttnMACE:
        """The model used for validation and export: the EMA weights when enabled."""
        return self.ema if self.ema is not None else self.model

    def validate(self) -> Dict[str, Any]:
        model = self.eval_model()
        preds = predict(
            model, self.valid_set, self.settings.valid_batch_size, str(self.device), self.settings.max_atoms_per_pass
        )
        self.model.train()
        metrics = compute_metrics(preds, self.valid_config_types)
        w = self.loss_weights
        overall = metrics["overall"]
        loss = w.energy * (overall["energy_rmse_meV_per_atom"] * 1e-3) ** 2
        if "forces_rmse_meV_per_A" in overall:  # absent when no validation frame has forces
            loss += w.forces * (overall["forces_rmse_meV_per_A"] * 1e-3) ** 2
        return {"valid_loss": loss, "metrics": metrics}

    def fit(self) -> Dict[str, Any]:
        """Train until ``max_epochs``, early stopping, or ``max_hours`` of wall time.

        With ``max_hours`` no epoch is started that would end after the limit, judged by the
        longest epoch of this process so far, so the last checkpoint is written in time (a session
        or a GPU lease that ends at a fixed time keeps it). The first epoch always runs.
        """
        s = self.settings
        if _rank() == 0:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            log.info(
                "model with %d parameters; %d train / %d valid frames",
                count_parameters(self.model),
                len(self.train_set),
                len(self.valid_set),
            )
        last_metrics: Dict[str, Any] = {}
        started = time.perf_counter()
        longest = 0.0  # the longest epoch of this process: the time the next one is expected to take
        self._warm_up()
        while self.epoch < s.max_epochs and self.bad_epochs < s.patience:
            if (
                s.max_hours > 0
                and longest > 0
                and self._out_of_time(time.perf_counter() - started + longest > 3600.0 * s.max_hours)
            ):
                if _rank() == 0:
                    log.info(
                        "time limit: another epoch (%.0f s) would end after --max-hours %g; stopping after epoch %d",
                        longest,
                        s.max_hours,
                        self.epoch,
                    )
                break
            epoch = self.epoch + 1
            start = time.perf_counter()
            row: Dict[str, Any] = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]}
            row.update(self._train_epoch(epoch))
            valid = self.validate()
            overall = valid["metrics"]["overall"]
            row.update(
                valid_loss=valid["valid_loss"],
                valid_energy_rmse_meV_per_atom=overall["energy_rmse_meV_per_atom"],
                valid_forces_rmse_meV_per_A=overall.get("forces_rmse_meV_per_A", float("nan")),
            )
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(valid["valid_loss"])
            elif self.scheduler is not None:
                self.scheduler.step()
            improved = valid["valid_loss"] < self.best_valid
            if improved:
                self.best_valid = valid["valid_loss"]
                self.bad_epochs = 0
                last_metrics = valid["metrics"]
            else:
                self.bad_epochs += 1
            row["seconds"] = time.perf_counter() - start
            longest = max(longest, row["seconds"])
            self.history.append(row)
            self.epoch = epoch
            if _rank() == 0:
                # the checkpoint first: a failing export must never cost the training state
                atomic_save(self.state_dict(), self.checkpoint_path)
                if s.snapshot_every > 0 and epoch % s.snapshot_every == 0:
                    self.save_snapshot()
                if improved:
                    try:
                        self.export_best(valid["metrics"])
                    except Exception:  # noqa: BLE001 - logged with its traceback; training goes on
                        log.exception("export of the best model failed (the checkpoint is saved)")
                self._write_metrics()
                log.info(
                    "epoch %d  lr %.2e  loss %.4g  train E %.2f meV/atom F %.1f meV/Å  "
                    "valid E %.2f meV/atom F %.1f meV/Å  %.1fs%s",
                    epoch,
                    row["lr"],
                    row["train_loss"],
                    row["train_energy_rmse_meV_per_atom"],
                    row["train_forces_rmse_meV_per_A"],
                    row["valid_energy_rmse_meV_per_atom"],
                    row["valid_forces_rmse_meV_per_A"],
                    row["seconds"],
                    "  *" if improved else "",
                )
        if self.bad_epochs >= s.patience and _rank() == 0:
            log.info("early stopping: no validation improvement for %d epochs", self.bad_epochs)
        return last_metrics

    # ----------------------------------------------------------------- outputs
    def save_snapshot(self) -> None:
        """The weights used for validation (EMA when on) of the epoch just completed, in the
        checkpoint format without optimizer state: ``attnmace-eval``, ``attnmace-export`` and
        ``--init-from`` read it like a ``checkpoint.pt``, and two runs can be compared at the same
        epoch after both have gone on."""
        write_snapshot(
            self.output_dir,
            self.epoch,
            weights=self.eval_model().state_dict(),
            ema=self.ema is not None,
            history=self.history,
            settings=asdict(self.settings),
            model_config=self.model.config.to_dict(),
        )

    def export_best(self, metrics: Dict[str, Any]) -> None:
        model = self.eval_model()
        extra = {"epoch": self.epoch, "valid_metrics": metrics["overall"], "training": self.settings.extra}
        export = copy_weights(model, build_model(config=model.config, dtype=torch.float64))  # on the CPU
        export_model(export, self.output_dir / "model.pt", extra=json.loads(json.dumps(extra, default=str)))

    def _write_metrics(self) -> None:
        path = self.output_dir / "metrics.csv"
        tmp = path.with_name(path.name + ".tmp")
        fields = list(self.history[0].keys())
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(self.history)
        os.replace(tmp, path)
        self._plot()

    def _plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = [r["epoch"] for r in self.history]
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        for ax, key, label in (
            (axes[0], "energy_rmse_meV_per_atom", "energy RMSE (meV/atom)"),
            (axes[1], "forces_rmse_meV_per_A", "force RMSE (meV/Å)"),
        ):
            ax.semilogy(epochs, [r["train_" + key] for r in self.history], label="train")
            ax.semilogy(epochs, [r["valid_" + key] for r in self.history], label="valid (EMA)")
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
            ax.legend()
        fig.tight_layout()
        tmp = self.output_dir / "learning_curve.tmp.png"
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        os.replace(tmp, self.output_dir / "learning_curve.png")
