"""The run_card madnis block: defaults, one-line errors naming the entry, card text, TrainingConfig mapping."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from madnis_plugin.settings import MadnisSettings, card_block

INVALID = {
    "madnis_steps": "-1",
    "madnis_batch_size": "1",
    "madnis_lr": "0",
    "madnis_lr_schedule": "linear",
    "madnis_loss": "l2",
    "madnis_buffer_size": "0",
    "madnis_buffered_steps": "-2",
    "madnis_vegas_pretraining": "maybe",
    "madnis_train_channel_weights": "2",
    "madnis_uniform_fraction": "1.5",
    "madnis_drop_threshold": "1",
    "madnis_device": "tpu",
    "madnis_integration_points": "1",
    "madnis_workers": "0",
    "madnis_reuse": "perhaps",
    "madnis": "yes please",
}


def test_defaults_are_valid_and_cover_every_entry():
    settings = MadnisSettings()
    names = [name for name, _, _ in MadnisSettings.entries()]
    assert names[0] == "madnis" and all(n.startswith("madnis_") for n in names[1:])
    assert set(INVALID) == set(names)
    assert settings.madnis is True


@pytest.mark.parametrize("entry,value", sorted(INVALID.items()))
def test_invalid_value_names_the_card_entry_in_one_line(entry, value):
    with pytest.raises(ValueError) as error:
        MadnisSettings.from_card({entry: value})
    message = str(error.value)
    assert f"run_card entry {entry} " in message and "\n" not in message


def test_card_strings_are_converted_like_madevent_writes_them():
    card = {
        "madnis": ".false.",
        "madnis_steps": "200",
        "madnis_lr": "5e-4",
        "madnis_device": " cpu ",
        "madnis_reuse": "T",
        "nevents": 10,
    }
    settings = MadnisSettings.from_card(card)
    assert (settings.madnis, settings.steps, settings.lr, settings.device, settings.reuse) == (
        False,
        200,
        5e-4,
        "cpu",
        True,
    )


def test_card_block_round_trips_through_the_reader():
    text = card_block(MadnisSettings(steps=77, loss="kl"))
    card = {}
    for line in text.splitlines():
        match = re.match(r"^\s*(\S+)\s*=\s*(\w+)\s*!", line)
        if match:
            card[match.group(2)] = match.group(1)
    assert MadnisSettings.from_card(card) == MadnisSettings(steps=77, loss="kl")


def test_shipped_card_template_matches_the_defaults():
    shipped = Path(__file__).parents[1] / "PLUGIN" / "madnis_plugin" / "Cards" / "run_card_madnis_block.dat"
    assert shipped.read_text() == card_block(), "regenerate with: python -m madnis_plugin.settings > " + str(shipped)


def test_training_config_mapping():
    pytest.importorskip("madnis.config")
    settings = MadnisSettings(
        steps=12,
        batch_size=64,
        lr=2e-3,
        lr_schedule="constant",
        loss="variance",
        buffer_size=5,
        buffered_steps=2,
        uniform_fraction=0.25,
        drop_threshold=0.0,
        train_channel_weights=False,
    )
    config = settings.training_config(seed=42)
    assert (config.steps, config.batch_size, config.learning_rate, config.lr_schedule, config.loss) == (
        12,
        64,
        2e-3,
        "constant",
        "variance",
    )
    assert (config.buffer_capacity, config.buffered_steps, config.uniform_fraction, config.drop_threshold) == (
        5,
        2,
        0.25,
        0.0,
    )
    assert (config.train_channel_weights, config.seed, config.device) == (False, 42, "cpu")
    assert dataclasses.is_dataclass(config)
