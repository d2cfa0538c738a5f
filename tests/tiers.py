"""The two test tiers: a parametrized test runs one case in the unit tier, the rest with the slow tests."""

import pytest


def unit_tier(cases: dict, keep: str, *, unpack: bool = False) -> list:
    """``cases`` as pytest params named by their keys: ``keep`` in the unit tier, the others marked slow.
    With ``unpack``, each case is a tuple of the test's several arguments."""
    return [pytest.param(*(case if unpack else (case,)), id=name, marks=() if name == keep else pytest.mark.slow)
            for name, case in cases.items()]
