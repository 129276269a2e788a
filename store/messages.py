"""Dispatcher messages and their delivery state per device.

A delivery moves queued -> sent -> acknowledged | failed, or to expired when its message expires
first. `sent` without an answer stays open: the text goes again when the terminal reconnects.
Every change is announced with NOTIFY on `CHANNEL_STATE` (payload: the message id), so each worker
process can tell its WebSocket clients; a new message is announced on `CHANNEL_NEW`, so the
process that holds a terminal's connection sends it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

CHANNEL_NEW = "telematics_message_new"
CHANNEL_STATE = "telematics_message_state"
OPEN = ("queued", "sent")
FINAL = ("acknowledged", "failed", "expired")


@dataclass(frozen=True, slots=True)
class Delivery:
    device_id: int
    uid: str
    org_unit_id: int | None
    state: str
    updated_at: datetime
    detail: str | None


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    text: str
    created_at: datetime
    created_by: str
    expires_at: datetime
    deliveries: list[Delivery]


@dataclass(frozen=True, slots=True)
class Pending:
    """A text one device still has to get."""

    message_id: int
    device_id: int
    text: str
    attempts: int


async def create(
    conn: psycopg.AsyncConnection, text: str, created_by: str, expires_at: datetime, device_ids: Sequence[int]
) -> int:
    """The message and a queued delivery per device, in one transaction, announced on commit."""
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO messages (text, created_by, expires_at) VALUES (%s, %s, %s) RETURNING id",
            (text, created_by, expires_at),
        )
        row = await cur.fetchone()
        assert row is not None
        message_id = int(row[0])
        await conn.execute(
            "INSERT INTO message_deliveries (message_id, device_id) SELECT %s, unnest(%s::integer[])",
            (message_id, list(device_ids)),
        )
        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL_NEW, str(message_id)))
    return message_id


async def get(conn: psycopg.AsyncConnection, message_id: int) -> Message | None:
    cur = await conn.execute(
        "SELECT id, text, created_at, created_by, expires_at FROM messages WHERE id = %s", (message_id,)
    )
    row = await cur.fetchone()
    if row is None:
        return None
    cur = await conn.execute(
        "SELECT d.device_id, v.uid, v.org_unit_id, d.state::text, d.updated_at, d.detail"
        " FROM message_deliveries d JOIN devices v ON v.id = d.device_id"
        " WHERE d.message_id = %s ORDER BY d.device_id",
        (message_id,),
    )
    deliveries = [Delivery(*r) for r in await cur.fetchall()]
    return Message(row[0], row[1], row[2], row[3], row[4], deliveries)


async def recent(conn: psycopg.AsyncConnection, limit: int) -> list[int]:
    cur = await conn.execute("SELECT id FROM messages ORDER BY id DESC LIMIT %s", (limit,))
    return [int(r[0]) for r in await cur.fetchall()]


async def open_for(
    conn: psycopg.AsyncConnection, device_ids: Sequence[int], message_id: int | None = None
) -> list[Pending]:
    """Unexpired texts not yet answered for these devices (of one message, or of all), oldest first."""
    cur = await conn.execute(
        "SELECT d.message_id, d.device_id, m.text, d.attempts FROM message_deliveries d"
        " JOIN messages m ON m.id = d.message_id"
        " WHERE d.device_id = ANY(%s) AND d.state IN ('queued', 'sent') AND m.expires_at > now()"
        " AND (%s::bigint IS NULL OR d.message_id = %s) ORDER BY d.message_id",
        (list(device_ids), message_id, message_id),
    )
    return [Pending(*r) for r in await cur.fetchall()]


async def set_state(
    conn: psycopg.AsyncConnection, message_id: int, device_id: int, state: str, detail: str | None = None
) -> bool:
    """Move a delivery on; a final state is never left. True when it changed (and was announced)."""
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE message_deliveries SET state = %s::delivery_state, detail = %s, updated_at = now(),"
            " attempts = attempts + (%s = 'sent')::int"
            " WHERE message_id = %s AND device_id = %s AND state IN ('queued', 'sent')",
            (state, detail, state, message_id, device_id),
        )
        changed = cur.rowcount > 0
        if changed:
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL_STATE, str(message_id)))
    return changed


async def expire(conn: psycopg.AsyncConnection) -> list[int]:
    """Open deliveries of expired messages become `expired`; the messages that changed."""
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE message_deliveries d SET state = 'expired', updated_at = now() FROM messages m"
            " WHERE m.id = d.message_id AND m.expires_at <= now() AND d.state IN ('queued', 'sent')"
            " RETURNING d.message_id"
        )
        ids = sorted({int(r[0]) for r in await cur.fetchall()})
        for message_id in ids:
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL_STATE, str(message_id)))
    return ids


async def open_phones(conn: psycopg.AsyncConnection, message_id: int | None) -> list[tuple[int, str, str]]:
    """(device id, uid, text) of queued, unexpired deliveries to phones (MQTT devices)."""
    cur = await conn.execute(
        "SELECT d.device_id, v.uid, m.text FROM message_deliveries d"
        " JOIN messages m ON m.id = d.message_id JOIN devices v ON v.id = d.device_id"
        " WHERE v.protocol = 'mqtt' AND d.state = 'queued' AND m.expires_at > now()"
        " AND (%s::bigint IS NULL OR d.message_id = %s) ORDER BY d.message_id",
        (message_id, message_id),
    )
    return [(int(r[0]), r[1], r[2]) for r in await cur.fetchall()]
