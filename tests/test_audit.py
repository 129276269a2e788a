"""The audit log: admins read the entries of callers in their units; nobody changes it, not even in SQL."""

from __future__ import annotations

import secrets

import aiohttp
import psycopg
import pytest

from access import passwords, tokens
from store import audit, devices, users
from store.devices import OrgUnitRecord
from telematics.server import Server
from tests.conftest import API_TOKEN


async def _user(db: psycopg.AsyncConnection, role: str, unit_id: int) -> tuple[str, str]:
    name = f"{role}-{secrets.token_hex(3)}"
    user = await users.create_user(db, name, role, unit_id, passwords.hash_password("pw-" + name))
    return name, await tokens.issue(db, user.id, "test", None)


async def test_admins_read_their_units_entries_and_the_log_cannot_be_changed(
    server: Server, db: psycopg.AsyncConnection
) -> None:
    tag = secrets.token_hex(3)
    await devices.upsert_units(db, [OrgUnitRecord(f"c-{tag}", "City"), OrgUnitRecord(f"e-{tag}", "East", f"c-{tag}"),
                                    OrgUnitRecord(f"w-{tag}", "West", f"c-{tag}")])  # fmt: skip
    east, west = await users.unit_by_code(db, f"e-{tag}"), await users.unit_by_code(db, f"w-{tag}")
    assert east is not None and west is not None
    auditor, _ = await _user(db, "auditor", east.id)
    other, _ = await _user(db, "auditor", west.id)
    _, east_admin = await _user(db, "admin", east.id)
    _, dispatcher = await _user(db, "dispatcher", east.id)
    for name, unit in ((auditor, east.id), (other, west.id)):
        await audit.record(db, user_id=None, user_name=name, role="auditor", org_unit_id=unit, action="export.gpx",
                           target={"device": 7}, outcome="ok", client="127.0.0.1")  # fmt: skip
    api = f"http://127.0.0.1:{server.ports['api']}/api/audit"
    async with aiohttp.ClientSession() as http:
        async with http.get(api, headers={"Authorization": f"Bearer {east_admin}"}) as r:
            assert r.status == 200
            users_seen = {e["user"] for e in (await r.json())["entries"]}
        assert auditor in users_seen and other not in users_seen
        async with http.get(f"{api}?action=export&user={other}", headers={"Authorization": f"Bearer {API_TOKEN}"}) as r:
            (entry,) = (await r.json())["entries"]
            assert entry["action"] == "export.gpx" and entry["target"] == {"device": 7} and entry["unit"] == west.id
        async with http.get(api, headers={"Authorization": f"Bearer {dispatcher}"}) as r:
            assert r.status == 403
        async with http.get(f"{api}?since=yesterday", headers={"Authorization": f"Bearer {API_TOKEN}"}) as r:
            assert r.status == 400
    for statement in ("UPDATE audit_log SET outcome = 'ok'", "DELETE FROM audit_log"):
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            await db.execute(statement)
        await db.rollback()
