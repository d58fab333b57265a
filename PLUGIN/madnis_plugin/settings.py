"""The ``madnis`` block of the run_card as one typed dataclass: entries, defaults, validation, card text.

Every ``madnis_*`` run_card entry is a field of :class:`MadnisSettings` whose metadata holds the card
comment. The same table feeds the run_card block written by ``output madnis`` (:func:`card_block`),
the registration of the entries in MG5aMC's RunCard (so stock MadEvent ignores them) and the mapping to
``madnis.TrainingConfig``. Validation happens once, with one-line errors naming the card entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LR_SCHEDULES = ("constant", "cosine", "exponential")
LOSSES = ("stratified_variance", "variance", "kl", "rkl")


def _entry(default: Any, comment: str) -> Any:
    return field(default=default, metadata={"comment": comment})


@dataclass(frozen=True)
class MadnisSettings:
    """The ``madnis*`` run_card entries (names without the ``madnis_`` prefix, except ``madnis``)."""

    madnis: bool = _entry(True, "use MadNIS instead of survey/refine (False: stock MadEvent)")
    steps: int = _entry(1000, "training budget: optimiser steps (online + buffered) per P-dir")
    batch_size: int = _entry(1024, "points per training step")
    lr: float = _entry(1e-3, "learning rate")
    lr_schedule: str = _entry("cosine", "learning-rate schedule: " + ", ".join(LR_SCHEDULES))
    loss: str = _entry("stratified_variance", "training loss: " + ", ".join(LOSSES))
    buffer_size: int = _entry(10, "batches kept in the sample buffer for buffered training")
    buffered_steps: int = _entry(3, "buffered training steps after each online step")
    vegas_pretraining: bool = _entry(False, "initialise the flows from a VEGAS grid per channel group")
    train_channel_weights: bool = _entry(
        True, "learn channel weights (kept at MadEvent's prior when the scale depends on the channel)"
    )
    uniform_fraction: float = _entry(0.1, "share of each batch spread uniformly over channels, in [0, 1]")
    drop_threshold: float = _entry(
        1e-3, "drop the smallest channels summing to below this fraction of sigma, in [0, 1)"
    )
    device: str = _entry("cpu", "torch device: cpu, cuda, cuda:N or auto")
    integration_points: int = _entry(100000, "points of the final integration per P-dir (after training)")
    workers: int = _entry(1, "parallel Fortran evaluation workers per P-dir")
    reuse: bool = _entry(False, "re-use the trained sampler DIR/madnis/P*.madnis.pt (skips training)")

    def __post_init__(self) -> None:
        _validate(self)

    @staticmethod
    def card_name(field_name: str) -> str:
        """run_card entry name of a field: ``madnis`` or ``madnis_<field>``."""
        return "madnis" if field_name == "madnis" else f"madnis_{field_name}"

    @classmethod
    def entries(cls) -> list[tuple[str, Any, str]]:
        """(card name, default, comment) of every entry, in card order."""
        return [(cls.card_name(f.name), f.default, f.metadata["comment"]) for f in dataclasses.fields(cls)]

    @classmethod
    def from_card(cls, card: Mapping[str, Any], **overrides: Any) -> MadnisSettings:
        """Read the entries from a run_card mapping (MG5aMC RunCard or dict); missing entries keep defaults.

        Values may be typed already (registered entries) or strings (a card read without registration).
        ``overrides`` (by field name) win over the card.
        """
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = cls.card_name(f.name)
            if f.name in overrides:
                values[f.name] = overrides[f.name]
            elif name in card:
                values[f.name] = _convert(card[name], type(f.default), name)
        return cls(**values)

    def training_config(self, seed: int = 0) -> Any:
        """The ``madnis.TrainingConfig`` these entries describe (``seed``: the run's random seed)."""
        from madnis.config import TrainingConfig

        return TrainingConfig(
            steps=self.steps,
            batch_size=self.batch_size,
            learning_rate=self.lr,
            lr_schedule=self.lr_schedule,
            loss=self.loss,
            buffer_capacity=self.buffer_size,
            buffered_steps=self.buffered_steps,
            vegas_pretraining=self.vegas_pretraining,
            train_channel_weights=self.train_channel_weights,
            uniform_fraction=self.uniform_fraction,
            drop_threshold=self.drop_threshold,
            device=self.torch_device(),
            seed=seed,
        )

    def torch_device(self) -> str:
        """The torch device string; ``auto`` picks cuda when available."""
        if self.device.lower() != "auto":
            return self.device.lower()
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


def card_block(settings: MadnisSettings | None = None) -> str:
    """The documented ``madnis`` block of a run_card (MadEvent's ``value = name ! comment`` layout)."""
    settings = settings or MadnisSettings()
    lines = [
        "#*********************************************************************",
        "# MadNIS: neural multi-channel importance sampling (madnis-mg5)      *",
        "# madnis = True replaces survey/refine by MadNIS training per P-dir, *",
        "# integration and unweighting; madnis = False runs stock MadEvent.   *",
        "#*********************************************************************",
    ]
    for f in dataclasses.fields(settings):
        lines.append(
            f"  {_card_value(getattr(settings, f.name))} = {settings.card_name(f.name)} ! {f.metadata['comment']}"
        )
    return "\n".join(lines) + "\n"


def _card_value(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _convert(value: Any, target: type, name: str) -> Any:
    """Convert a card value to ``target``; ValueError naming the entry if impossible."""
    if isinstance(value, str):
        text = value.strip()
        if target is bool:
            lowered = text.lower().strip(".")
            if lowered in ("true", "t", "1", "on", "yes"):
                return True
            if lowered in ("false", "f", "0", "off", "no"):
                return False
            raise ValueError(f"run_card entry {name} = {text}: expected True or False")
        if target is str:
            return text
        try:
            return target(float(text)) if target is int and float(text).is_integer() else target(text)
        except ValueError:
            raise ValueError(f"run_card entry {name} = {text}: expected {target.__name__}") from None
    if target is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if target is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _validate(s: MadnisSettings) -> None:
    def fail(field_name: str, rule: str) -> None:
        name = s.card_name(field_name)
        raise ValueError(f"run_card entry {name} = {getattr(s, field_name)}: {rule}")

    for f in dataclasses.fields(s):
        value = getattr(s, f.name)
        expected = type(f.default)
        if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
            fail(f.name, f"expected {expected.__name__}")
    if s.steps < 0:
        fail("steps", "must be >= 0")
    if s.batch_size < 2:
        fail("batch_size", "must be >= 2")
    if not s.lr > 0:
        fail("lr", "must be > 0")
    if s.lr_schedule not in LR_SCHEDULES:
        fail("lr_schedule", "must be one of " + ", ".join(LR_SCHEDULES))
    if s.loss not in LOSSES:
        fail("loss", "must be one of " + ", ".join(LOSSES))
    if s.buffer_size < 1:
        fail("buffer_size", "must be >= 1")
    if s.buffered_steps < 0:
        fail("buffered_steps", "must be >= 0")
    if not 0.0 <= s.uniform_fraction <= 1.0:
        fail("uniform_fraction", "must be in [0, 1]")
    if not 0.0 <= s.drop_threshold < 1.0:
        fail("drop_threshold", "must be in [0, 1)")
    device = s.device.lower()
    if not (device in ("cpu", "cuda", "auto") or (device.startswith("cuda:") and device[5:].isdigit())):
        fail("device", "must be cpu, cuda, cuda:N or auto")
    if s.integration_points < 2:
        fail("integration_points", "must be >= 2")
    if s.workers < 1:
        fail("workers", "must be >= 1")


if __name__ == "__main__":
    print(card_block(), end="")
