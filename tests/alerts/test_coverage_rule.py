"""The coverage rule's params and the shifts it computes: local time, midnight, the lookback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.coverage_rule import CoverageParams, parse, shifts_ending

H = timedelta(hours=1)


def test_defaults_and_params() -> None:
    p = parse({"shifts": [["05:00", "09:00"]]})
    assert p == CoverageParams(shifts=((5 * 3600, 9 * 3600),))
    p = parse({"shifts": [["22:00", "02:00"]], "zone_kind": "duty_grid", "max_speed_kmh": None, "utc_offset_h": -5,
               "resolution": 10, "min_share": 0.5, "future_param": 1})  # fmt: skip
    assert p.max_speed_kmh is None and p.utc_offset_s == -5 * 3600 and p.resolution == 10 and p.min_share == 0.5
    assert parse({}, need_shifts=False).shifts == ()


@pytest.mark.parametrize(
    ("params", "wrong"),
    [
        ({}, "shifts"),
        ({"shifts": []}, "shifts"),
        ({"shifts": [["05:00", "09:00"], ["05:00", "07:00"]]}, "shifts"),
        ({"shifts": [["5:00", "9"]]}, "shifts"),
        ({"shifts": [["05:00", "09:00"]], "zone_kind": "river"}, "zone_kind"),
        ({"shifts": [["05:00", "09:00"]], "min_speed_kmh": 20}, "max_speed_kmh"),
        ({"shifts": [["05:00", "09:00"]], "min_share": 2}, "min_share"),
        ({"shifts": [["05:00", "09:00"]], "max_gap_s": 0}, "max_gap_s"),
        ({"shifts": [["05:00", "09:00"]], "tolerance_m": -1}, "tolerance_m"),
    ],
)
def test_wrong_params_are_named(params: dict[str, object], wrong: str) -> None:
    with pytest.raises(ValueError, match=f"^params.{wrong}"):
        parse(params)


def test_shifts_in_local_time_and_across_midnight() -> None:
    p = parse({"shifts": [["05:00", "09:00"], ["22:00", "02:00"]]})  # Beijing time, UTC+8
    now = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)  # 11:00 in Beijing
    found = shifts_ending(p, now - 36 * H, now)
    t = datetime(2026, 11, 18, 21, 0, tzinfo=UTC)  # 05:00 on the 19th in Beijing
    assert found == [
        (t - 7 * H, t - 3 * H),  # the 18th 22:00 to the 19th 02:00 (ended 33 hours ago)
        (t, t + 4 * H),  # the 19th, 05:00-09:00
        (t + 17 * H, t + 21 * H),  # the 19th 22:00 to the 20th 02:00
        (t + 24 * H, t + 28 * H),  # the 20th, 05:00-09:00 (ended at 09:00, two hours ago)
    ]
    # One that has not ended by `until` is not there; one that ended exactly then is.
    assert shifts_ending(p, t + 27 * H, t + 28 * H - timedelta(seconds=1)) == []
    assert shifts_ending(p, t + 27 * H, t + 28 * H) == [(t + 24 * H, t + 28 * H)]


def test_a_whole_day() -> None:
    p = parse({"shifts": [["00:00", "00:00"]], "utc_offset_h": 0})
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    day = datetime(2026, 11, 19, tzinfo=UTC)
    assert shifts_ending(p, now - 36 * H, now) == [(day, day + 24 * H)]
