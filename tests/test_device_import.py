"""`telematics import units|devices FILE.csv`: all rows or none, bad rows reported by line."""

from __future__ import annotations

import secrets
from pathlib import Path

import psycopg
import pytest

from telematics.cli import main


@pytest.fixture
def cli_env(fresh_database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("TELEMATICS_DSN", fresh_database)
    monkeypatch.delenv("TELEMATICS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./telematics.toml from elsewhere
    return tmp_path


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _count(dsn: str, sql: str, *args: object) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql, args).fetchone()  # type: ignore[arg-type]
        assert row is not None
        return int(row[0])


def test_units_then_devices(cli_env: Path, fresh_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    tag = secrets.token_hex(3)
    units = _write(
        cli_env / "units.csv",
        f"code,name,parent\ncity-{tag},深圳市城管局,\ndist-{tag},南山区,city-{tag}\nteam-{tag},一中队,dist-{tag}\n",
    )
    assert main(["import", "units", str(units)]) == 0
    assert "imported 3 units" in capsys.readouterr().out
    parent = _count(
        fresh_database,
        "SELECT p.id FROM org_units c JOIN org_units p ON p.id = c.parent_id WHERE c.code = %s",
        f"team-{tag}",
    )
    assert parent == _count(fresh_database, "SELECT id FROM org_units WHERE code = %s", f"dist-{tag}")

    devices = _write(
        cli_env / "devices.csv",
        "uid,kind,name,plate,org_unit,protocol,enabled\n"
        f"a{tag},muck,渣土车 1,粤B00001,team-{tag},jt808,true\n"
        f"b{tag},sanitation,Sweeper 2,,dist-{tag},,\n"
        f"c{tag},inspector,Zhang San,,,osmand,false\n",
    )
    assert main(["import", "devices", str(devices)]) == 0
    assert "imported 3 devices" in capsys.readouterr().out
    with psycopg.connect(fresh_database) as conn:
        rows = conn.execute(
            "SELECT uid, kind::text, name, plate, protocol::text, enabled FROM devices WHERE uid LIKE %s ORDER BY uid",
            (f"_{tag}",),
        ).fetchall()
    assert rows == [
        (f"a{tag}", "muck", "渣土车 1", "粤B00001", "jt808", True),
        (f"b{tag}", "sanitation", "Sweeper 2", None, None, True),
        (f"c{tag}", "inspector", "Zhang San", None, "osmand", False),
    ]
    # Importing again updates in place.
    _write(devices, f"uid,kind,name\na{tag},muck,renamed\n")
    assert main(["import", "devices", str(devices)]) == 0
    assert _count(fresh_database, "SELECT count(*) FROM devices WHERE uid = %s AND name = 'renamed'", f"a{tag}") == 1


def test_bad_device_file_imports_nothing(
    cli_env: Path, fresh_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = secrets.token_hex(3)
    path = _write(
        cli_env / "bad.csv",
        "uid,kind,name,org_unit,enabled\n"
        f"ok1{tag},muck,fine,,\n"  # line 2: good
        f"bad{tag},tractor,wrong kind,,\n"  # line 3
        f"ok1{tag},muck,repeat,,\n"  # line 4: duplicate uid
        "has space,muck,bad uid,,\n"  # line 5
        f"ok2{tag},muck,no such unit,nowhere-{tag},\n"  # line 6
        f"ok3{tag},muck,bad flag,,maybe\n",  # line 7
    )
    assert main(["import", "devices", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:3: kind 'tractor'" in err
    assert f"{path}:4: uid 'ok1{tag}' repeats line 2" in err
    assert f"{path}:5: uid 'has space'" in err
    assert f"{path}:6: organisation unit 'nowhere-{tag}' does not exist" in err
    assert f"{path}:7: enabled 'maybe'" in err
    assert "nothing imported (5 bad rows)" in err
    assert _count(fresh_database, "SELECT count(*) FROM devices WHERE uid LIKE %s", f"%{tag}") == 0


def test_bad_headers_and_unreadable_files(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    no_uid = _write(cli_env / "h.csv", "name,kind\nx,muck\n")
    assert main(["import", "devices", str(no_uid)]) == 1
    assert ":1: the header must name a `uid` column" in capsys.readouterr().err
    extra = _write(cli_env / "e.csv", "uid,colour\nx,red\n")
    assert main(["import", "devices", str(extra)]) == 1
    assert "unknown columns ['colour']" in capsys.readouterr().err
    assert main(["import", "devices", str(cli_env / "missing.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_bad_unit_file_imports_nothing(cli_env: Path, fresh_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    tag = secrets.token_hex(3)
    path = _write(cli_env / "u.csv", f"code,name,parent\nu1{tag},One,\nu2{tag},Two,later{tag}\nlater{tag},Later,\n")
    assert main(["import", "units", str(path)]) == 1
    assert (
        f"{path}:3: parent 'later{tag}' is neither an existing unit nor on an earlier line" in capsys.readouterr().err
    )
    assert _count(fresh_database, "SELECT count(*) FROM org_units WHERE code LIKE %s", f"%{tag}") == 0
