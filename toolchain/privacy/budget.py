"""One privacy budget for a whole recipe: plan the DP-SGD noise before any training, then carry
the accountant's state (the ledger) from training through every fine-tune after pruning.

DP-SGD's guarantee composes over every noisy step that touched the training data. The recipe
knows all of them in advance (training epochs plus the fine-tune epochs of each pruning step), so
the noise multiplier is solved once for the total number of steps, and each phase adds its steps
to the same accountant history. The history travels in the stage records (train -> prune), so a
cached re-run reads the same numbers instead of re-accounting.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from toolchain.config.stages import PrivacyConfig, PruneConfig, TrainConfig
from toolchain.errors import BadInput

# Beyond this noise multiplier the clipped gradient drowns in noise: training would "succeed"
# and return a model near chance. Refused up front, with the number of epochs that fit instead.
MAX_NOISE_MULTIPLIER = 50.0
EXTRA_HINT = "pip install 'edgeopt[privacy]'"


def require_opacus() -> None:
    try:
        import opacus  # noqa: F401
    except ImportError:
        raise BadInput(
            "[train.privacy] trains with DP-SGD through Opacus, which is not installed",
            f"install the extra: {EXTRA_HINT}",
        ) from None


def finetune_phases(prune: PruneConfig) -> list[int]:
    """Epochs of each fine-tune that follows pruning (the prune stage's schedule)."""
    if prune.kind == "none" or not prune.finetune_epochs:
        return []
    if prune.kind == "structured":
        return [prune.finetune_epochs] * prune.steps
    return [prune.finetune_epochs]


@dataclass(frozen=True)
class PrivacyPlan:
    """What the whole recipe will spend: every phase runs `steps_per_epoch` Poisson-sampled steps
    per epoch at `sample_rate` (Opacus: 1 / batches per epoch) with one noise multiplier."""

    config: PrivacyConfig
    train_rows: int
    sample_rate: float
    steps_per_epoch: int
    phase_epochs: tuple[int, ...]  # training first, then each fine-tune
    noise_multiplier: float

    @property
    def planned_steps(self) -> int:
        return self.steps_per_epoch * sum(self.phase_epochs)

    def new_ledger(self) -> PrivacyLedger:
        return PrivacyLedger(
            self.config, self.noise_multiplier, self.sample_rate, self.planned_steps, self.train_rows
        )

    def key(self) -> dict[str, Any]:
        """What training's output depends on beyond [train]: the schedule the noise was solved for."""
        return {
            "phase_epochs": list(self.phase_epochs),
            "train_rows": self.train_rows,
            "noise_multiplier": self.noise_multiplier,
        }


@dataclass
class PrivacyLedger:
    """The accountant's state between phases: Opacus's history of (noise multiplier, sample rate,
    steps) entries. Each DP phase starts from it and leaves its own steps in it."""

    config: PrivacyConfig
    noise_multiplier: float
    sample_rate: float
    planned_steps: int
    train_rows: int
    history: list[tuple[float, float, int]] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return sum(int(h[2]) for h in self.history)

    def epsilon(self) -> float:
        return spent_epsilon(self.history, self.config.delta, self.config.accountant)

    def record(self) -> dict[str, Any]:
        """The facts a report, manifest and model card state, plus the history to continue from."""
        return {
            "mechanism": "DP-SGD (Opacus)",
            "epsilon": self.epsilon(),
            "target_epsilon": self.config.epsilon,
            "delta": self.config.delta,
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.config.max_grad_norm,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "planned_steps": self.planned_steps,
            "train_rows": self.train_rows,
            "accountant": self.config.accountant,
            "history": [[float(s), float(q), int(n)] for s, q, n in self.history],
        }

    @classmethod
    def from_record(cls, config: PrivacyConfig, record: dict[str, Any]) -> PrivacyLedger:
        return cls(
            config,
            record["noise_multiplier"],
            record["sample_rate"],
            record["planned_steps"],
            record["train_rows"],
            [(float(s), float(q), int(n)) for s, q, n in record["history"]],
        )


def spent_epsilon(history, delta: float, accountant: str) -> float:
    if not history:
        return 0.0
    acc = _accountant(accountant)
    acc.history = [(float(s), float(q), int(n)) for s, q, n in history]
    with warnings.catch_warnings():  # "optimal order is the largest alpha": a looser bound, still a bound
        warnings.simplefilter("ignore")
        return float(acc.get_epsilon(delta=delta))


def _accountant(name: str):
    from opacus.accountants import create_accountant

    return create_accountant(mechanism=name)


def _epsilon_at(sigma: float, sample_rate: float, steps: int, delta: float, accountant: str) -> float:
    return spent_epsilon([(sigma, sample_rate, steps)], delta, accountant)


def check_delta(delta: float, train_rows: int) -> None:
    if not 0 < delta < 1 / train_rows:
        raise BadInput(
            f"[train.privacy] delta = {delta:g} is outside (0, 1/N) = (0, {1 / train_rows:.3g}) "
            f"for N = {train_rows} training rows",
            "set delta below 1/N, e.g. 1e-5",
        )


def plan_privacy(train: TrainConfig, prune: PruneConfig, train_rows: int) -> PrivacyPlan:
    """Validate [train.privacy] against the data and schedule, and solve the noise multiplier
    that spends at most epsilon over all phases. Raises BadInput before any training."""
    cfg = train.privacy
    assert cfg is not None
    check_delta(cfg.delta, train_rows)
    require_opacus()
    steps_per_epoch = math.ceil(train_rows / train.batch_size)
    sample_rate = 1 / steps_per_epoch  # what Opacus's Poisson loader uses
    phases = (train.epochs, *finetune_phases(prune))
    total = steps_per_epoch * sum(phases)
    if total == 0:
        raise BadInput("[train.privacy] is set but the recipe trains for 0 epochs", "set [train] epochs >= 1")
    sigma = _noise_multiplier(cfg, sample_rate, total)
    if sigma is None or sigma > MAX_NOISE_MULTIPLIER:
        raise _too_many_epochs(cfg, sample_rate, steps_per_epoch, phases, sigma)
    return PrivacyPlan(cfg, train_rows, sample_rate, steps_per_epoch, phases, sigma)


def _noise_multiplier(cfg: PrivacyConfig, sample_rate: float, steps: int) -> float | None:
    from opacus.accountants.utils import get_noise_multiplier

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(
                get_noise_multiplier(
                    target_epsilon=cfg.epsilon,
                    target_delta=cfg.delta,
                    sample_rate=sample_rate,
                    steps=steps,
                    accountant=cfg.accountant,
                )
            )
    except ValueError:  # "the privacy budget is too low": no noise multiplier reaches it
        return None


def _too_many_epochs(
    cfg: PrivacyConfig, sample_rate: float, steps_per_epoch: int, phases: tuple[int, ...], sigma: float | None
) -> BadInput:
    """The refusal when epsilon cannot cover the schedule: how many epochs in total would fit."""
    lo, hi = 0, sum(phases)  # epochs (train + fine-tunes) that fit at the noise bound, by bisection
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if (
            _epsilon_at(MAX_NOISE_MULTIPLIER, sample_rate, mid * steps_per_epoch, cfg.delta, cfg.accountant)
            <= cfg.epsilon
        ):
            lo = mid
        else:
            hi = mid - 1
    fit = f"{lo} epochs in total fit" if lo else "not even one epoch fits"
    need = (
        f"a noise multiplier of {sigma:.1f}" if sigma is not None else "more noise than any multiplier gives"
    )
    schedule = " + ".join(str(e) for e in phases)
    return BadInput(
        f"[train.privacy] epsilon = {cfg.epsilon:g} cannot cover {sum(phases)} epochs of DP-SGD "
        f"({schedule}: train + fine-tunes) at delta = {cfg.delta:g}: it needs {need} "
        f"(at most {MAX_NOISE_MULTIPLIER:g} trains anything); {fit}",
        "lower [train] epochs / [prune] finetune_epochs to that total, raise batch_size, or raise epsilon",
    )
