"""cunet.evaluate.targets: which reference stems are scored, and which model output estimates each (`--map`)."""

from __future__ import annotations

import pytest

from cunet.commands import message as message_of
from cunet.errors import UserError
from cunet.evaluate.targets import parse_map, resolve_targets

FOUR = ("vocals", "drums", "bass", "other")
FIVE = (*FOUR, "guitar")


def test_parse_map():
    assert parse_map([]) == {}
    assert parse_map(["guitar=other"]) == {"guitar": "other"}
    assert parse_map([" guitar = other ,keys=other", "voice=vocals", "guitar=other"]) == {
        "guitar": "other",
        "keys": "other",
        "voice": "vocals",
    }


@pytest.mark.parametrize("text", ["guitar", "=other", "guitar=", "a=b=c", "guitar=other,", ""])
def test_parse_map_rejects_bad_pairs(text):
    with pytest.raises(UserError, match=r"bad map .*expected REFERENCE=OUTPUT"):
        parse_map([text])


def test_parse_map_rejects_two_outputs_for_one_reference():
    with pytest.raises(UserError, match="two outputs for 'guitar': 'other' and 'bass'"):
        parse_map(["guitar=other", "guitar=bass"])


def test_default_is_the_model_outputs_the_data_holds():
    # a four-instrument model on guitar data: `other` is not in the data, `guitar` not in the model
    assert resolve_targets(None, ["vocals", "drums", "bass", "guitar"], FOUR) == (
        ("vocals", "drums", "bass"),
        {"vocals": "vocals", "drums": "drums", "bass": "bass"},
    )
    # a five-instrument model: every output the data holds, in the model's order
    targets, source = resolve_targets(None, ["bass", "guitar", "vocals", "piano"], FIVE)
    assert targets == ("vocals", "bass", "guitar") and source["guitar"] == "guitar"


def test_map_adds_and_aliases_targets():
    targets, source = resolve_targets(
        None, ["vocals", "drums", "bass", "guitar"], FOUR, {"guitar": "other"}
    )
    assert targets == ("vocals", "drums", "bass", "guitar") and source["guitar"] == "other"
    # an alias: the model calls it `voice`, the data `vocals`
    assert resolve_targets(
        ["vocals"], ["vocals", "bass"], ("voice", "bass"), {"vocals": "voice"}
    ) == (("vocals",), {"vocals": "voice"})
    # a reference of an output's name estimated by another output
    targets, source = resolve_targets(None, ["vocals", "other"], FIVE, {"other": "guitar"})
    assert targets == ("vocals", "other") and source == {"vocals": "vocals", "other": "guitar"}


def test_requested_instruments_any_names():
    assert resolve_targets(["guitar", "guitar"], ["vocals", "guitar"], FIVE) == (
        ("guitar",),
        {"guitar": "guitar"},
    )
    assert resolve_targets(["piano"], ["piano", "vocals"], None) == (("piano",), {})


def test_without_a_model_every_stem_of_the_data():
    assert resolve_targets(None, ["vocals", "guitar", "piano"], None) == (
        ("vocals", "guitar", "piano"),
        {},
    )


@pytest.mark.parametrize(
    "requested, stems, outputs, mapping, message",
    [
        (
            ["piano"],
            ["vocals", "guitar"],
            FOUR,
            {},
            "unknown instrument 'piano': no track holds a 'piano' stem "
            "(stems in the data: vocals, guitar)",
        ),
        (
            ["guitar"],
            ["vocals", "guitar"],
            FOUR,
            {},
            "the model has no 'guitar' output (outputs: vocals, drums, bass, "
            "other); score another output as 'guitar' with --map guitar=OUTPUT",
        ),
        (
            None,
            ["vocals", "guitar"],
            FOUR,
            {"guitar": "piano"},
            "--map guitar=piano: the model has no 'piano' output",
        ),
        (
            None,
            ["vocals"],
            FOUR,
            {"guitar": "other"},
            "--map guitar=other: no track holds a 'guitar' stem",
        ),
        (None, ["vocals"], None, {"guitar": "other"}, "--map needs a model"),
        (None, ["guitar", "piano"], FOUR, {}, "share no name; choose with --instruments and --map"),
        ([], ["vocals"], FOUR, {}, "no instrument requested"),
    ],
)
def test_resolve_errors_are_one_line(requested, stems, outputs, mapping, message):
    with pytest.raises(UserError) as info:
        resolve_targets(requested, stems, outputs, mapping)
    # the messages above are the CLI's; the library's name no options
    assert message in message_of(info.value) and "\n" not in str(info.value)
    assert "--" not in str(info.value)
