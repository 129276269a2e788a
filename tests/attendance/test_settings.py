"""The [attendance] settings: the time zone of the shift plan."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from telematics import config


def test_default_and_configured_time_zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert config.load(env={}).attendance.zone() == ZoneInfo("Asia/Shanghai")
    path = tmp_path / "t.toml"
    path.write_text('[attendance]\ntimezone = "Europe/Berlin"\n')
    assert config.load(path, env={}).attendance.zone() == ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "../etc/passwd"])
def test_unknown_time_zone_is_a_clear_error(tmp_path: Path, zone: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(f'[attendance]\ntimezone = "{zone}"\n')
    with pytest.raises(config.ConfigError, match=r"attendance\.timezone: no time zone"):
        config.load(path, env={})
