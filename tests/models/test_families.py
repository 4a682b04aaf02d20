"""Every family follows the written-down contract, and every table keyed by family covers the same families."""

import dataclasses

import pytest

from genloom import api
from genloom.models import FAMILIES
from genloom.recipes import RECIPES


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_module_defines_the_contract(name):
    family = FAMILIES[name]
    assert dataclasses.is_dataclass(family.CONFIG)
    assert family.BATCHING in (None, "sentences", "stream")
    assert isinstance(family.MASK_TOKEN, bool)
    assert callable(family.check_config) and callable(family.build)
    family.check_config(family.CONFIG())  # the defaults are valid settings


def test_tables_keyed_by_family_cover_every_family():
    assert set(RECIPES) == set(FAMILIES)
    assert set(api.EVALUATIONS) == set(FAMILIES)
    assert set(api.CONDITIONAL_FAMILIES) <= set(FAMILIES)
    assert set(api.TEST_FIGURES) <= set(FAMILIES)
