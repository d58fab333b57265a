"""The ``madnis`` block of the run_card: one table of entries, shared with ``madnis.TrainingConfig``.

Why: training options are defined once, as the user-facing fields of ``madnis.TrainingConfig``
(``madnis.config.card_field``: default and one-line help); the plugin's own entries (``madnis``,
``device``, ``integration_points``, ``precision``, ``workers``, ``reuse``, ``recycle_helicities``) are the fields of
:class:`MadnisSettings` beside them. Every entry is ``madnis_<field>`` on the card (``madnis`` for the switch), so a new card
field of TrainingConfig becomes a run_card entry without any change here. The table (:func:`entries`)
feeds the block ``output madnis`` writes (:func:`card_block`; ``Cards/run_card_madnis_block.dat`` is
tested against it), the registration of the entries in MG5aMC's RunCard (so stock MadEvent ignores
them) and the reading of a card. Validation happens once, with one-line errors naming the card entry:
TrainingConfig checks the training entries, ``_validate`` the plugin's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from madnis.config import AUTO, CARD, ConfigError, TrainingConfig

# The plugin's defaults where they differ from the library's: MadEvent matrix elements are expensive,
# buffered steps train on points already evaluated, and training lasts while it pays (``madnis.stopping``).
# No VEGAS pre-training: on g g > w+ d u~ g (24 channel groups) it spent half of 1000 steps' calls and left
# 0.10 % unweighting efficiency against 1.40 % without (benchmarks/results/wjj_issue8.md, same code). The flow's
# width and the defensive flat share by the phase-space dimension (madnis.config.HIGH_DIMENSIONS says why).
CARD_DEFAULTS = {
    "buffered_steps": 3,
    "steps": AUTO,
    "vegas_pretraining": False,
    "flow_hidden_units": AUTO,
    "defensive_fraction": AUTO,
}
# Entries renamed to their TrainingConfig field: an old card naming them gets a one-line error.
RENAMED = {"madnis_lr": "madnis_learning_rate", "madnis_buffer_size": "madnis_buffer_capacity"}
TRUE_WORDS = ("true", "t", "1", "on", "yes")
FALSE_WORDS = ("false", "f", "0", "off", "no")


@dataclass(frozen=True)
class CardEntry:
    """One run_card entry: ``field`` of TrainingConfig (``training``) or of MadnisSettings."""

    field: str
    default: Any
    comment: str
    training: bool

    @property
    def name(self) -> str:
        return card_name(self.field)


def card_name(field_name: str) -> str:
    """The run_card name of a field: ``madnis`` or ``madnis_<field>``."""
    return "madnis" if field_name == "madnis" else f"madnis_{field_name}"


def _entry(default: Any, comment: str) -> Any:
    return field(default=default, metadata={CARD: comment})


def card_training() -> TrainingConfig:
    """TrainingConfig with the run_card's defaults (the library's, except :data:`CARD_DEFAULTS`)."""
    return TrainingConfig(**CARD_DEFAULTS)


@dataclass(frozen=True)
class MadnisSettings:
    """The ``madnis*`` run_card entries: the plugin's own fields and ``training`` (TrainingConfig's card fields)."""

    madnis: bool = _entry(True, "use MadNIS instead of survey/refine (False: stock MadEvent)")
    training: TrainingConfig = field(default_factory=card_training)
    device: str = _entry("cpu", "torch device: cpu, cuda, cuda:N or auto")
    integration_points: int = _entry(
        100000, "final integration points per P-dir on average (more for a large sigma, fewer for a small)"
    )
    precision: str = _entry(
        "auto",
        "target relative error of the cross section: auto (0.25 / sqrt(nevents)), a number, or 0 (only the points the"
        " events need); weighted points are drawn beyond the events' until it is reached",
    )
    workers: str = _entry(
        "auto", "Fortran evaluation workers per P-dir: auto (MadEvent's cores: nb_core, 1 per cluster job) or N"
    )
    reuse: bool = _entry(False, "re-use the trained sampler DIR/madnis/P*.madnis.pt (skips training)")
    recycle_helicities: bool = _entry(
        True, "MadEvent's helicity recycling before the bridge build, as its survey (False: every helicity summed)"
    )
    draw_scale_channel: bool = _entry(
        True,
        "dynamical_scale_choice = -1: draw each point's scale channel from alpha (MadEvent's cross section), so"
        " that channel weights are learned (False: the generating channel's scale, channel weights MadEvent's alpha)",
    )
    draw_subprocess: bool = _entry(
        True,
        "draw one grouped subprocess and mirror per point, by its parton luminosity, as MadEvent does: one matrix"
        " element a point (False: every subprocess and mirror of the P-dir summed at every point)",
    )

    def __post_init__(self) -> None:
        _validate(self)

    @staticmethod
    def entries() -> list[CardEntry]:
        """Every run_card entry with its default, in card order (the switch, training, the rest)."""
        own = [f for f in dataclasses.fields(MadnisSettings) if CARD in f.metadata]
        training = [
            CardEntry(f.name, CARD_DEFAULTS.get(f.name, f.default), f.metadata[CARD], True)
            for f in dataclasses.fields(TrainingConfig)
            if CARD in f.metadata
        ]
        plugin = [CardEntry(f.name, f.default, f.metadata[CARD], False) for f in own]
        return plugin[:1] + training + plugin[1:]

    def value(self, entry: CardEntry) -> Any:
        """The value of ``entry`` in these settings."""
        return getattr(self.training if entry.training else self, entry.field)

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> MadnisSettings:
        """Read the entries from a run_card mapping (MG5aMC RunCard or dict); missing entries keep defaults.

        Values may be typed already (registered entries) or strings (a card read without registration).
        """
        user_set = getattr(card, "user_set", card)  # a RunCard holds every registered entry: look at the set ones
        renamed = [old for old in RENAMED if old in user_set]
        if renamed:
            old = renamed[0]
            raise ValueError(f"run_card entry {old} is now called {RENAMED[old]}: rename it in the run_card")
        own: dict[str, Any] = {}
        training: dict[str, Any] = {}
        for entry in cls.entries():
            if entry.name in card:
                value = _convert(card[entry.name], type(entry.default), entry.name)
                (training if entry.training else own)[entry.field] = value
        return cls(training=_training(training), **own)

    def training_config(self, seed: int = 0) -> TrainingConfig:
        """The ``madnis.TrainingConfig`` these entries describe (``seed``: the run's random seed)."""
        return replace(self.training, device=self.torch_device(), seed=seed)

    def fixed_workers(self) -> int | None:
        """The card's number of bridge workers per P-dir, None for ``auto`` (the run's cores decide)."""
        return None if self.workers.lower() == "auto" else int(self.workers)

    def fixed_precision(self) -> float | None:
        """The card's target relative error of the cross section, None for ``auto`` (the rule of
        :attr:`.run.RunSettings.relative_precision`, from ``nevents``)."""
        return None if self.precision.lower() == AUTO else float(self.precision)

    def torch_device(self) -> str:
        """The torch device string; ``auto`` picks cuda when available."""
        if self.device.lower() != "auto":
            return self.device.lower()
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


def registered_entries() -> list[tuple[str, Any, str]]:
    """(name, default, comment) of every entry MG5aMC's RunCard must know, renamed ones included (so that an
    old card's entry is never taken for a Fortran user entry; :meth:`MadnisSettings.from_card` refuses it)."""
    current = {entry.name: entry for entry in MadnisSettings.entries()}
    renamed = [(old, current[new].default, f"renamed to {new}") for old, new in RENAMED.items()]
    return [(e.name, e.default, e.comment) for e in current.values()] + renamed


def card_bool(value: Any) -> bool | None:
    """A run_card boolean as MadEvent and users write it (True, .false., T, 1, on, ...); None if it is none."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower().strip(".")
    return True if text in TRUE_WORDS else False if text in FALSE_WORDS else None


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
    for entry in settings.entries():
        lines.append(f"  {_card_value(settings.value(entry))} = {entry.name} ! {entry.comment}")
    return "\n".join(lines) + "\n"


def _card_value(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _training(values: dict[str, Any]) -> TrainingConfig:
    """The card's TrainingConfig; TrainingConfig's own checks, reported by card entry name."""
    library, card = TrainingConfig(), card_training()
    for name, value in values.items():
        if getattr(card, name) == AUTO:
            values[name] = _auto_or_number(card_name(name), value, type(getattr(library, name)))
        else:
            _check_type(card_name(name), value, type(getattr(card, name)))
    try:
        return replace(card, **values)
    except ConfigError as error:
        raise ValueError(f"run_card entry {card_name(error.field)} = {error.value}: must be {error.rule}") from None


def _auto_or_number(name: str, value: Any, kind: type) -> int | float | str:
    """An entry whose card default is ``auto``: ``auto`` or a number of ``kind`` (int or float, the library
    default's type; a card gives either as text)."""
    text = str(value).strip().lower()
    if text == AUTO:
        return AUTO
    try:
        number = float(text) if not isinstance(value, bool) else math.nan
    except ValueError:
        number = math.nan
    if not (number.is_integer() if kind is int else math.isfinite(number)):
        raise ValueError(
            f"run_card entry {name} = {value}: expected auto or {'an integer' if kind is int else 'a number'}"
        )
    return kind(number)


def _convert(value: Any, target: type, name: str) -> Any:
    """Convert a card value to ``target``; ValueError naming the entry if impossible."""
    if isinstance(value, str):
        text = value.strip()
        if target is bool:
            parsed = card_bool(text)
            if parsed is None:
                raise ValueError(f"run_card entry {name} = {text}: expected True or False")
            return parsed
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


def _check_type(name: str, value: Any, expected: type) -> None:
    if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
        raise ValueError(f"run_card entry {name} = {value}: expected {expected.__name__}")


def _validate(s: MadnisSettings) -> None:
    """The plugin's own entries (TrainingConfig validated the training ones)."""

    def fail(field_name: str, rule: str) -> None:
        raise ValueError(f"run_card entry {card_name(field_name)} = {getattr(s, field_name)}: {rule}")

    for entry in s.entries():
        if not entry.training:
            _check_type(entry.name, getattr(s, entry.field), type(entry.default))
    device = s.device.lower()
    if not (device in ("cpu", "cuda", "auto") or (device.startswith("cuda:") and device[5:].isdigit())):
        fail("device", "must be cpu, cuda, cuda:N or auto")
    if s.integration_points < 2:
        fail("integration_points", "must be >= 2")
    if s.precision.lower() != AUTO:
        try:
            precision = float(s.precision)
        except ValueError:
            precision = math.nan
        if not (math.isfinite(precision) and 0 <= precision < 1):
            fail("precision", "must be auto or a relative error in [0, 1) (0: only the points the events need)")
    if s.workers.lower() != "auto" and not (s.workers.isdigit() and int(s.workers) >= 1):
        fail("workers", "must be auto or an integer >= 1")


if __name__ == "__main__":
    print(card_block(), end="")
