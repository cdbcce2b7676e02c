"""Stem groups from `--stems` specs."""

import pytest

from cunet.errors import UserError
from cunet.synth.stems import DEFAULT_STEMS, parse_stems


def test_default_is_drums_bass_other():
    spec = parse_stems()
    assert spec.names == ("drums", "bass", "other")
    assert spec.group_of(None) == 0  # percussion channel
    assert spec.group_of(32) == spec.group_of(39) == 1  # GM 33-40
    assert spec.group_of(31) == spec.group_of(40) == spec.group_of(0) == 2
    assert spec.text() == DEFAULT_STEMS


def test_custom_groups_and_rest():
    spec = parse_stems("guitar=25-32,piano=1-8+17,rest=*")
    assert spec.group_of(24) == spec.group_of(31) == 0
    assert spec.group_of(16) == spec.group_of(0) == 1
    assert spec.group_of(None) == 2  # drums fall into '*' when no group takes them
    assert spec.text() == "guitar=25-32,piano=1-8+17,rest=*"


def test_unselected_parts_are_dropped():
    spec = parse_stems("guitar=25-32")
    assert spec.group_of(24) == 0
    assert spec.group_of(None) is None and spec.group_of(33) is None


@pytest.mark.parametrize(
    "text",
    [
        "guitar",
        "guitar=",
        "guitar=0",
        "guitar=129",
        "guitar=30-25",
        "Mixture=1",
        "a=1-8,a=9",
        "a=1-8,b=8",
        "a=drums,b=drums",
        "a=*,b=*",
        "a=x",
        "1a=3",
    ],
)
def test_bad_specs_name_the_fault(text):
    with pytest.raises(UserError, match="--stems"):
        parse_stems(text)
