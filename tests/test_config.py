"""Settings: working defaults, the file, the environment overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from telematics import config


def test_defaults_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = config.load(env={})
    assert s.uses_embedded_db and s.database.embedded_port == 55432
    assert (s.api.port, s.jt808.port) == (8082, 5015)
    assert s.database.retention_days == 180
    token = s.api_token()
    assert len(token) >= 32 and s.api_token() == token  # generated once, then kept
    assert (tmp_path / "var" / "api-token").stat().st_mode & 0o077 == 0


def test_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[database]\ndsn = "postgresql://file/db"\nretention_days = 30\n[jt808]\nport = 6000\n')
    s = config.load(path, env={})
    assert (s.database.dsn, s.database.retention_days, s.jt808.port) == ("postgresql://file/db", 30, 6000)
    s = config.load(path, env={"TELEMATICS_DSN": "postgresql://env/db", "TELEMATICS_API_TOKEN": "abc"})
    assert s.database.dsn == "postgresql://env/db" and s.api_token() == "abc"
    assert config.load(env={"TELEMATICS_CONFIG": str(path)}).jt808.port == 6000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[jt808]\nprot = 1\n", "unknown setting 'prot'"),
        ("[jt808]\nport = 'x'\n", "jt808.port must be int"),
        ("[ingest]\nunknown_devices = 'maybe'\n", "unknown_devices must be"),
        ("[database\n", "t.toml"),
        ("jt808 = 3\n", "jt808 must be a table"),
    ],
)
def test_bad_files_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError, match=message):
        config.load(path, env={})


def test_open_files_limit_raised_to_the_hard_limit() -> None:
    import resource

    from telematics.server import raise_open_files_limit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
        limit = raise_open_files_limit()
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == limit
        assert limit == (hard if hard != resource.RLIM_INFINITY else 1 << 20)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
