"""The run_card madnis block: one table with TrainingConfig, one-line errors naming the entry, the card file."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import replace
from pathlib import Path

import pytest
from madnis_plugin.settings import (
    CARD_DEFAULTS,
    MadnisSettings,
    card_block,
    card_bool,
    card_training,
)

from madnis.config import CARD, TrainingConfig

INVALID = {
    "madnis_steps": "-1",
    "madnis_batch_size": "1",
    "madnis_learning_rate": "0",
    "madnis_lr_schedule": "linear",
    "madnis_loss": "l2",
    "madnis_buffer_capacity": "0",
    "madnis_flow_hidden_units": "0",
    "madnis_buffered_steps": "-2",
    "madnis_vegas_pretraining": "maybe",
    "madnis_train_channel_weights": "2",
    "madnis_average_parameters": "sometimes",
    "madnis_uniform_fraction": "1.5",
    "madnis_defensive_fraction": "1",
    "madnis_drop_threshold": "1",
    "madnis_max_overweight": "1",
    "madnis_max_minutes": "0",
    "madnis_device": "tpu",
    "madnis_integration_points": "1",
    "madnis_workers": "0",
    "madnis_precision": "-0.01",
    "madnis_reuse": "perhaps",
    "madnis_recycle_helicities": "sometimes",
    "madnis_draw_scale_channel": "sometimes",
    "madnis_draw_subprocess": "often",
    "madnis": "yes please",
}


def test_defaults_are_valid_and_cover_every_entry():
    settings = MadnisSettings()
    names = [entry.name for entry in MadnisSettings.entries()]
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
        "madnis_learning_rate": "5e-4",
        "madnis_device": " cpu ",
        "madnis_reuse": "T",
        "nevents": 10,
    }
    settings = MadnisSettings.from_card(card)
    training = settings.training
    assert (settings.madnis, training.steps, training.learning_rate, settings.device, settings.reuse) == (
        False,
        200,
        5e-4,
        "cpu",
        True,
    )


def test_steps_are_auto_by_default_or_an_integer():
    assert MadnisSettings().training.steps == "auto"
    for value, steps in (("auto", "auto"), (" AUTO ", "auto"), ("500", 500), (500, 500), ("1e3", 1000)):
        assert MadnisSettings.from_card({"madnis_steps": value}).training.steps == steps
    for value in ("many", "2.5", True):
        with pytest.raises(ValueError, match=r"^run_card entry madnis_steps = .*: expected auto or an integer$"):
            MadnisSettings.from_card({"madnis_steps": value})


def test_flow_width_is_auto_by_default_or_an_integer():
    assert MadnisSettings().training.flow_hidden_units == "auto"
    for value, units in (("auto", "auto"), ("48", 48), (64, 64)):
        assert MadnisSettings.from_card({"madnis_flow_hidden_units": value}).training.flow_hidden_units == units
    with pytest.raises(ValueError, match=r"^run_card entry madnis_flow_hidden_units = wide: expected auto or an"):
        MadnisSettings.from_card({"madnis_flow_hidden_units": "wide"})


def test_defensive_fraction_is_auto_by_default_or_a_number():
    assert MadnisSettings().training.defensive_fraction == "auto"
    for value, fraction in (("auto", "auto"), ("0.05", 0.05), ("0", 0.0), (0.2, 0.2)):
        assert MadnisSettings.from_card({"madnis_defensive_fraction": value}).training.defensive_fraction == fraction
    with pytest.raises(
        ValueError, match=r"^run_card entry madnis_defensive_fraction = some: expected auto or a number$"
    ):
        MadnisSettings.from_card({"madnis_defensive_fraction": "some"})


def test_card_block_round_trips_through_the_reader():
    settings = MadnisSettings(training=replace(card_training(), steps=77, loss="kl"))
    text = card_block(settings)
    card = {}
    for line in text.splitlines():
        match = re.match(r"^\s*(\S+)\s*=\s*(\w+)\s*!", line)
        if match:
            card[match.group(2)] = match.group(1)
    assert MadnisSettings.from_card(card) == settings


def test_shipped_card_template_matches_the_defaults():
    shipped = Path(__file__).parents[1] / "PLUGIN" / "madnis_plugin" / "Cards" / "run_card_madnis_block.dat"
    assert shipped.read_text() == card_block(), "regenerate with: python -m madnis_plugin.settings > " + str(shipped)


def test_training_entries_are_the_card_fields_of_training_config():
    """A TrainingConfig field made with card_field is a run_card entry with the library's default (except
    CARD_DEFAULTS), so a new one needs no change in the plugin."""
    library = {f.name: f.default for f in dataclasses.fields(TrainingConfig) if CARD in f.metadata}
    entries = {e.field: e.default for e in MadnisSettings.entries() if e.training}
    assert entries == {**library, **CARD_DEFAULTS}
    # buffered: since the first release; no VEGAS: measured on W+2j (benchmarks/results/wjj_issue8.md); the flow's
    # width and flat share by the dimension: measured on W+2j, ttg, ttj and Drell-Yan (madnis.config.HIGH_DIMENSIONS)
    assert CARD_DEFAULTS == {
        "buffered_steps": 3,
        "steps": "auto",
        "vegas_pretraining": False,
        "flow_hidden_units": "auto",
        "defensive_fraction": "auto",
    }


def test_renamed_entry_is_refused_in_one_line():
    with pytest.raises(ValueError, match="madnis_lr is now called madnis_learning_rate"):
        MadnisSettings.from_card({"madnis_lr": "0.01"})


@pytest.mark.parametrize(
    "text,expected",
    [
        ("True", True),
        (".true.", True),
        ("T", True),
        ("1", True),
        (" on ", True),
        (".FALSE.", False),
        ("f", False),
        ("0", False),
        ("no", False),
        ("maybe", None),
        (True, True),
        (False, False),
    ],
)
def test_card_bool(text, expected):
    assert card_bool(text) is expected


def test_training_config_mapping():
    training = replace(
        card_training(),
        steps=12,
        batch_size=64,
        learning_rate=2e-3,
        lr_schedule="constant",
        loss="variance",
        buffer_capacity=5,
        buffered_steps=2,
        uniform_fraction=0.25,
        drop_threshold=0.0,
        train_channel_weights=False,
    )
    config = MadnisSettings(training=training, device="CPU").training_config(seed=42)
    assert config == replace(training, seed=42, device="cpu")


def test_the_jets_of_a_p_dir_are_its_massless_final_state_partons():
    """PDG codes in the event's order: the two incoming legs do not count, the top and the W do not."""
    from madnis_plugin.bridge_integrand import final_state_partons

    assert final_state_partons((2, 2, 24, 2, 1)) == 2  # u u > w+ u d
    assert final_state_partons((21, 21, 24, 1, -2, 21)) == 3  # g g > w+ d u~ g
    assert final_state_partons((21, 21, 6, -6, 21)) == 1  # g g > t t~ g
    assert final_state_partons((21, 2, 11, -11, 2)) == 1  # g u > e- e+ u
    assert final_state_partons((2, -2, 11, -11)) == 0  # u u~ > e- e+
    assert final_state_partons((5, -5, 21, 21)) == 2  # b b~ > g g
