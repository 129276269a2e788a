"""Users, tokens and unit scope: the real server over real HTTP, the real database, the real CLI."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import psycopg
import pytest

from access import passwords, tokens
from access.limiter import FailureLimiter
from store import devices, users
from store.devices import DeviceRecord, OrgUnitRecord
from store.users import Unit
from telematics.cli import main
from telematics.server import Server
from tests.conftest import API_TOKEN

TELEMATICS = Path(sys.executable).parent / "telematics"


@dataclass
class Tree:
    """city -> east -> team, and city -> west."""

    city: Unit
    east: Unit
    team: Unit
    west: Unit


@pytest.fixture
async def tree(db: psycopg.AsyncConnection) -> Tree:
    tag = secrets.token_hex(3)
    await devices.upsert_units(
        db,
        [
            OrgUnitRecord(f"city-{tag}", "City"),
            OrgUnitRecord(f"east-{tag}", "East district", f"city-{tag}"),
            OrgUnitRecord(f"team-{tag}", "East team 1", f"east-{tag}"),
            OrgUnitRecord(f"west-{tag}", "West district", f"city-{tag}"),
        ],
    )
    found = [await users.unit_by_code(db, f"{name}-{tag}") for name in ("city", "east", "team", "west")]
    assert all(found)
    return Tree(*found)  # type: ignore[arg-type]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _api(server: Server) -> str:
    return f"http://127.0.0.1:{server.ports['api']}"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _new_user(
    db: psycopg.AsyncConnection, role: str, unit: Unit, password: str | None = None, expires_at: datetime | None = None
) -> tuple[str, str]:
    """(name, token) of a new user."""
    name = f"{role}-{secrets.token_hex(3)}"
    user = await users.create_user(db, name, role, unit.id, passwords.hash_password(password) if password else None)
    assert user is not None
    return name, await tokens.issue(db, user.id, "test", expires_at)


async def _get(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.get(url, **kw) as r:
        return r.status, await r.json() if r.content_type == "application/json" else await r.text()


async def _post(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.post(url, **kw) as r:
        return r.status, await r.json() if r.content_type == "application/json" else await r.text()


async def _device_with_fix(
    server: Server, db: psycopg.AsyncConnection, http: aiohttp.ClientSession, unit: str | None
) -> str:
    """A device in the unit (code) with one stored fix, sent as a phone would over OsmAnd HTTP."""
    uid = "acc-" + secrets.token_hex(5)
    await devices.upsert_devices(db, [DeviceRecord(uid=uid, kind="inspector", org_unit=unit)])
    fix = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    query = urlencode({"id": uid, "timestamp": int(fix.timestamp()), "lat": 22.54, "lon": 114.05})
    async with http.post(f"http://127.0.0.1:{server.ports['osmand']}/?{query}") as r:
        assert r.status == 200  # answered after the commit
    return uid


# --- no token, wrong token, the configured token ---------------------------------------------------


async def test_calls_without_a_valid_token_get_401(server: Server, http: aiohttp.ClientSession) -> None:
    api = _api(server)
    calls = [
        ("GET", "/api/me"),
        ("GET", "/api/units"),
        ("GET", "/api/devices/whatever/latest"),
        ("GET", "/metrics"),
        ("POST", "/api/logout"),
        ("POST", "/api/users"),
        ("GET", "/api/no-such-route"),  # no token: not even whether a route exists
        ("GET", "/api/login"),  # only POST is open
    ]
    for method, path in calls:
        for headers in ({}, _bearer("not-a-token"), {"Authorization": f"Basic {API_TOKEN}"}, _bearer("")):
            async with http.request(method, api + path, headers=headers) as r:
                assert r.status == 401, (method, path, headers)
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
                assert "error" in await r.json()
    async with http.get(api + "/api/me", headers=_bearer("not-a-token")) as r:
        assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


async def test_configured_token_is_a_built_in_admin_that_sees_everything(
    server: Server, db: psycopg.AsyncConnection, http: aiohttp.ClientSession, tree: Tree
) -> None:
    api = _api(server)
    assert await _get(http, api + "/api/me", headers=_bearer(API_TOKEN)) == (
        200,
        {"name": "system", "role": "admin", "unit": None},
    )
    status, body = await _get(http, api + "/api/units", headers=_bearer(API_TOKEN))
    assert status == 200
    assert {tree.city.id, tree.east.id, tree.team.id, tree.west.id} <= {u["id"] for u in body["units"]}
    async with http.get(api + "/metrics", headers=_bearer(API_TOKEN)) as r:
        assert r.status == 200 and "telematics_events_total" in await r.text()
    status, body = await _post(http, api + "/api/logout", headers=_bearer(API_TOKEN))
    assert status == 400 and "cannot be revoked" in body["error"]


async def test_query_token_only_on_websocket_paths(server: Server, db: psycopg.AsyncConnection, tree: Tree) -> None:
    _, token = await _new_user(db, "auditor", tree.east)
    api = _api(server)
    async with aiohttp.ClientSession() as http:
        # Past authentication, a plain GET of the WebSocket route is refused for not upgrading; without it, 401.
        assert (await _get(http, f"{api}/api/live/ws?token={token}"))[0] == 400
        assert (await _get(http, f"{api}/api/live/ws?token=wrong"))[0] == 401
        assert (await _get(http, f"{api}/api/live/ws"))[0] == 401
        assert (await _get(http, f"{api}/api/me?token={token}"))[0] == 401


# --- sessions --------------------------------------------------------------------------------------


async def test_login_me_logout(
    server: Server, db: psycopg.AsyncConnection, http: aiohttp.ClientSession, tree: Tree
) -> None:
    api = _api(server)
    name, _ = await _new_user(db, "dispatcher", tree.east, password="correct horse 马")

    wrong = await _post(http, api + "/api/login", json={"name": name, "password": "wrong"})
    unknown = await _post(http, api + "/api/login", json={"name": "nobody-" + name, "password": "wrong"})
    assert wrong == unknown == (401, {"error": "wrong name or password"})
    assert (await _post(http, api + "/api/login", json={"name": name}))[0] == 400
    assert (await _post(http, api + "/api/login", data="not json"))[0] == 400

    status, body = await _post(http, api + "/api/login", json={"name": name, "password": "correct horse 马"})
    assert status == 200
    token = body["token"]
    unit = {"id": tree.east.id, "code": tree.east.code, "name": "East district", "parent_id": tree.city.id}
    assert body["user"] == {"name": name, "role": "dispatcher", "unit": unit}
    expires = datetime.fromisoformat(body["expires"])
    assert timedelta(hours=11) < expires - datetime.now(UTC) <= timedelta(hours=12)

    assert await _get(http, api + "/api/me", headers=_bearer(token)) == (200, body["user"])
    # Only the hash is stored; the token was used, so last_used_at is set.
    cur = await db.execute(
        "SELECT label, expires_at, last_used_at FROM api_tokens WHERE token_hash = %s",
        (hashlib.sha256(token.encode()).digest(),),
    )
    label, stored_expiry, last_used = await cur.fetchone()  # type: ignore[misc]
    assert label == "login" and stored_expiry == expires and last_used is not None
    cur = await db.execute(
        "SELECT count(*) FROM api_tokens WHERE position(%s::bytea IN token_hash) > 0", (token.encode(),)
    )
    assert (await cur.fetchone()) == (0,)

    assert (await _post(http, api + "/api/logout", headers=_bearer(token)))[0] == 204
    assert (await _get(http, api + "/api/me", headers=_bearer(token)))[0] == 401


async def test_expired_token_and_disabled_user_are_refused(
    server: Server, db: psycopg.AsyncConnection, http: aiohttp.ClientSession, tree: Tree
) -> None:
    api = _api(server)
    _, expired = await _new_user(db, "auditor", tree.east, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert (await _get(http, api + "/api/me", headers=_bearer(expired)))[0] == 401

    # A token that expires while in use is not kept alive by the cache.
    _, short = await _new_user(db, "auditor", tree.east, expires_at=datetime.now(UTC) + timedelta(seconds=1.5))
    assert (await _get(http, api + "/api/me", headers=_bearer(short)))[0] == 200
    await asyncio.sleep(1.6)
    assert (await _get(http, api + "/api/me", headers=_bearer(short)))[0] == 401

    name, _ = await _new_user(db, "auditor", tree.east, password="pw-disabled")
    await db.execute("UPDATE users SET enabled = false WHERE name = %s", (name,))
    status, _ = await _post(http, api + "/api/login", json={"name": name, "password": "pw-disabled"})
    assert status == 401


# --- roles -----------------------------------------------------------------------------------------


async def test_only_admins_create_users_and_only_in_their_scope(
    server: Server, db: psycopg.AsyncConnection, http: aiohttp.ClientSession, tree: Tree
) -> None:
    api = _api(server)
    _, dispatcher = await _new_user(db, "dispatcher", tree.east)
    _, admin = await _new_user(db, "admin", tree.east)
    name = "new-" + secrets.token_hex(3)
    new = {"name": name, "role": "auditor", "unit": tree.team.code, "password": "s3cret"}

    status, body = await _post(http, api + "/api/users", headers=_bearer(dispatcher), json=new)
    assert status == 403 and "admin" in body["error"]

    status, body = await _post(http, api + "/api/users", headers=_bearer(admin), json=new)
    assert status == 201
    assert body["name"] == name and body["role"] == "auditor" and body["unit"]["id"] == tree.team.id
    assert (await _post(http, api + "/api/login", json={"name": name, "password": "s3cret"}))[0] == 200

    status, body = await _post(http, api + "/api/users", headers=_bearer(admin), json=new)
    assert status == 409 and "exists already" in body["error"]
    # The neighbouring district is as unknown to this admin as a unit that does not exist.
    for unit in (tree.west.id, tree.west.code, tree.city.code, "no-such-unit"):
        status, body = await _post(
            http, api + "/api/users", headers=_bearer(admin), json={**new, "name": name + "x", "unit": unit}
        )
        assert status == 400 and "no unit" in body["error"], unit
    for bad in ({"role": "root"}, {"password": ""}, {"name": " "}, {"name": 5}, {"unit": None}, {"unit": True}):
        status, body = await _post(
            http, api + "/api/users", headers=_bearer(admin), json={**new, "name": name + "y", **bad}
        )
        assert status == 400 and body["error"], bad

    # A user without a password: created by id, it cannot log in.
    status, body = await _post(
        http,
        api + "/api/users",
        headers=_bearer(admin),
        json={"name": name + "t", "role": "dispatcher", "unit": tree.east.id},
    )
    assert status == 201 and body["unit"]["code"] == tree.east.code
    assert (await _post(http, api + "/api/login", json={"name": name + "t", "password": "x"}))[0] == 401


# --- unit scope ------------------------------------------------------------------------------------


async def test_units_are_the_callers_subtree(
    server: Server, db: psycopg.AsyncConnection, http: aiohttp.ClientSession, tree: Tree
) -> None:
    _, token = await _new_user(db, "auditor", tree.east)
    status, body = await _get(http, _api(server) + "/api/units", headers=_bearer(token))
    assert status == 200
    assert body == {
        "units": [
            {"id": tree.east.id, "code": tree.east.code, "name": "East district", "parent_id": tree.city.id},
            {"id": tree.team.id, "code": tree.team.code, "name": "East team 1", "parent_id": tree.east.id},
        ]
    }
    assert await users.unit_subtree(db, tree.city.id) == sorted(
        u.id for u in (tree.city, tree.east, tree.team, tree.west)
    )


async def test_latest_position_only_inside_the_callers_units(
    server: Server, db: psycopg.AsyncConnection, http: aiohttp.ClientSession, tree: Tree
) -> None:
    api = _api(server)
    in_team = await _device_with_fix(server, db, http, tree.team.code)
    in_west = await _device_with_fix(server, db, http, tree.west.code)
    unassigned = await _device_with_fix(server, db, http, None)
    _, east = await _new_user(db, "dispatcher", tree.east)
    _, city = await _new_user(db, "auditor", tree.city)

    async def latest(token: str, uid: str) -> tuple[int, Any]:
        return await _get(http, f"{api}/api/devices/{uid}/latest", headers=_bearer(token))

    status, body = await latest(east, in_team)
    assert status == 200 and body["device"] == in_team and body["lat"] == pytest.approx(22.54)
    # Outside the scope: the same answer as for a device that does not exist.
    assert await latest(east, in_west) == (404, {"error": f"no device {in_west!r}"})
    assert await latest(east, unassigned) == (404, {"error": f"no device {unassigned!r}"})
    # A root unit's user and the configured token see every unit and the devices without one.
    for token in (city, API_TOKEN):
        for uid in (in_team, in_west, unassigned):
            assert (await latest(token, uid))[0] == 200, (token, uid)


# --- the command line ------------------------------------------------------------------------------


async def _cli(cwd: Path, dsn: str, *args: str, stdin: str = "") -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TELEMATICS_CONFIG", "TELEMATICS_API_TOKEN")}
    proc = await asyncio.create_subprocess_exec(
        str(TELEMATICS),
        *args,
        cwd=cwd,
        env={**env, "TELEMATICS_DSN": dsn},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_user_add_prints_a_token_that_works(
    server: Server,
    db: psycopg.AsyncConnection,
    http: aiohttp.ClientSession,
    tree: Tree,
    fresh_database: str,
    tmp_path: Path,
) -> None:
    api = _api(server)
    name = "cli-" + secrets.token_hex(3)
    rc, out, err = await _cli(
        tmp_path, fresh_database, "user", "add", name, "--role", "auditor", "--unit", tree.west.code,
        "--password-stdin", stdin="from stdin\n",
    )  # fmt: skip
    assert rc == 0, err
    token = out.strip()
    assert "\n" not in token and name in err
    status, body = await _get(http, api + "/api/me", headers=_bearer(token))
    assert status == 200 and body["role"] == "auditor" and body["unit"]["code"] == tree.west.code
    assert (await _post(http, api + "/api/login", json={"name": name, "password": "from stdin"}))[0] == 200

    rc, out, err = await _cli(tmp_path, fresh_database, "user", "token", name)
    assert rc == 0, err
    second = out.strip()
    assert second != token and (await _get(http, api + "/api/me", headers=_bearer(second)))[0] == 200

    rc, _, err = await _cli(tmp_path, fresh_database, "user", "revoke", name)
    assert rc == 0 and "revoked 3 tokens" in err  # two from the CLI, one from the login
    cur = await db.execute(
        "SELECT count(*) FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE u.name = %s", (name,)
    )
    assert await cur.fetchone() == (0,)


def test_cli_user_errors(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEMATICS_DSN", fresh_database)
    monkeypatch.delenv("TELEMATICS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    name = "cli-" + secrets.token_hex(3)
    city = "city-" + name
    (tmp_path / "units.csv").write_text(f"code,name\n{city},City\n", encoding="utf-8")
    assert main(["import", "units", str(tmp_path / "units.csv")]) == 0

    assert main(["user", "add", name, "--role", "admin", "--unit", "no-such-unit"]) == 1
    assert "no unit 'no-such-unit'" in capsys.readouterr().err
    assert main(["user", "add", name, "--role", "admin", "--unit", city]) == 0
    assert capsys.readouterr().out.strip()
    assert main(["user", "add", name, "--role", "dispatcher", "--unit", city]) == 1
    assert f"a user named {name!r} exists already" in capsys.readouterr().err
    assert main(["user", "token", "nobody-" + name]) == 1
    assert "no user named" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse refuses an unknown role
        main(["user", "add", name + "x", "--role", "root", "--unit", city])

    monkeypatch.setattr(sys, "stdin", _Stdin(""))
    assert main(["user", "password", name]) == 2
    assert "must not be empty" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", _Stdin("new password\n"))
    assert main(["user", "password", name]) == 0
    with psycopg.connect(fresh_database) as conn:
        row = conn.execute("SELECT password_hash FROM users WHERE name = %s", (name,)).fetchone()
    assert row is not None and passwords.verify_password("new password", row[0])


class _Stdin:
    def __init__(self, text: str) -> None:
        self.text = text

    def isatty(self) -> bool:
        return False

    def readline(self) -> str:
        return self.text


# --- password guessing -----------------------------------------------------------------------------


async def test_login_failures_are_limited_per_client(
    server: Server, db: psycopg.AsyncConnection, http: aiohttp.ClientSession, tree: Tree
) -> None:
    """From another loopback address (the limit is per client address): 10 failures a minute, then 429
    even with the right password; other clients are not affected."""
    api = _api(server)
    name, _ = await _new_user(db, "dispatcher", tree.east, password="right")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as guesser:
        for _ in range(10):
            assert (await _post(guesser, api + "/api/login", json={"name": name, "password": "guess"}))[0] == 401
        async with guesser.post(api + "/api/login", json={"name": name, "password": "right"}) as r:
            assert r.status == 429
            assert 0 < int(r.headers["Retry-After"]) <= 60
            assert "too many" in (await r.json())["error"]
    assert (await _post(http, api + "/api/login", json={"name": name, "password": "right"}))[0] == 200


def test_failure_limiter_window_slides() -> None:
    limiter = FailureLimiter(max_failures=3, window_s=60.0)
    for t in (0.0, 10.0, 20.0):
        assert limiter.retry_after("a", t) == 0
        limiter.fail("a", t)
    assert limiter.retry_after("a", 30.0) == pytest.approx(30.0)  # the first failure leaves the window at 60
    assert limiter.retry_after("b", 30.0) == 0
    assert limiter.retry_after("a", 60.0) == 0
    limiter.fail("a", 61.0)
    limiter.forgive("a")  # an attempt counted in advance that succeeded
    assert limiter.retry_after("a", 61.0) == 0


def test_password_hashes() -> None:
    encoded = passwords.hash_password("hunter2")
    scheme, n, r, p, salt, digest = encoded.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1") and salt and digest
    assert encoded != passwords.hash_password("hunter2")  # salted
    assert passwords.verify_password("hunter2", encoded)
    assert not passwords.verify_password("hunter3", encoded)
    assert not passwords.verify_password("", encoded)
    assert not passwords.verify_password("hunter2", None)
    assert not passwords.verify_password("hunter2", encoded.replace("scrypt$16384", "scrypt$16385"))
    assert not passwords.verify_password("hunter2", "plain")
    with pytest.raises(passwords.PasswordError):
        passwords.hash_password("")
