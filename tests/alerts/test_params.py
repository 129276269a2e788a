"""Rule params are checked where they are made: a typo in a limit is refused, not a rule silently off."""

from __future__ import annotations

import pytest

from alerts.params import problem


@pytest.mark.parametrize(
    ("params", "wrong"),
    [
        ({"limit_kmh": "60"}, "limit_kmh"),
        ({"min_s": -1}, "min_s"),
        ({"shifts": [["24:00", "06:00"]]}, "shifts"),
        ({"allowed": [["22:00"]]}, "allowed"),
        ({"utc_offset_h": 20}, "utc_offset_h"),
        ({"bits": [32]}, "bits"),
        ({"lift_bit": True}, "lift_bit"),
        ({"site_kinds": ["quarry"]}, "site_kinds"),
        ({"zone_kind": "river"}, "zone_kind"),
        ({"speed_zones": "yes"}, "speed_zones"),
        ({"min_share": 1.5}, "min_share"),
        ({"resolution": 16}, "resolution"),
        ([], "params"),
    ],
)
def test_wrong_params_are_named(params: object, wrong: str) -> None:
    found = problem(params)
    assert found is not None and found.startswith(f"params.{wrong}" if wrong != "params" else "params:")


def test_right_params_pass() -> None:
    assert problem({}) is None
    assert problem({"limit_kmh": 30.5, "min_s": 0, "shifts": [["22:00", "06:00"]], "utc_offset_h": -5}) is None
    assert problem({"lift_bit": None, "site_kinds": ["depot"], "max_speed_kmh": None, "future_param": 1}) is None
