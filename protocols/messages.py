"""Normalized messages that every protocol decoder emits.

Units are fixed here once for the whole project: degrees WGS-84, km/h, metres, UTC datetimes.
Raw protocol words (alarm and status bit fields) are kept as integers beside their named flags,
because vendors reuse reserved bits and a rule may need the raw word.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class ProtocolError(Exception):
    """The only exception a codec raises: misuse of an encoder or an unrecoverable stream."""


@dataclass(slots=True, kw_only=True)
class Message:
    protocol: str
    device: str  # the terminal's own id: JT/T 808 phone number, IMEI, app id
    msg_id: int = 0  # the protocol's message number (JT/T 808 id, GT06 protocol number)
    serial: int = 0  # the frame's serial number, quoted back by replies
    version: int = 0  # protocol revision of the frame where it matters (JT/T 808: 2011, 2013, 2019)


@dataclass(slots=True, kw_only=True)
class Position(Message):
    time: datetime  # fix time, UTC
    lat: float
    lon: float
    valid: bool
    speed_kmh: float | None = None
    course: float | None = None
    altitude_m: float | None = None
    accuracy_m: float | None = None
    satellites: int | None = None
    alarm: int = 0  # raw alarm word as the terminal sent it
    status: int = 0  # raw status word as the terminal sent it
    alarms: frozenset[str] = frozenset()  # named alarm flags
    flags: frozenset[str] = frozenset()  # named status flags (acc, load_full, door1_open, ...)
    mileage_km: float | None = None  # the terminal's own odometer
    backfill: bool = False  # sent later from the terminal's blind-area store (JT/T 808 0x0704 type 1)
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class Registration(Message):
    """JT/T 808 0x0100: the terminal asks for an authentication code."""

    province: int = 0
    city: int = 0
    manufacturer: str = ""
    model: str = ""
    terminal_id: str = ""
    plate_color: int = 0
    plate: str = ""


@dataclass(slots=True, kw_only=True)
class Authentication(Message):
    """JT/T 808 0x0102: the terminal presents the code it got at registration."""

    code: str
    imei: str = ""
    software_version: str = ""


@dataclass(slots=True, kw_only=True)
class Login(Message):
    """A terminal names itself on a connection (GT06 0x01, NMEA identification line)."""

    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class Heartbeat(Message):
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class Logout(Message):
    pass


@dataclass(slots=True, kw_only=True)
class CommandReply(Message):
    """The terminal's answer to a platform message (JT/T 808 0x0001, GT06 0x15/0x21, H02 V4)."""

    reply_serial: int = 0
    reply_id: int = 0
    result: int = 0  # JT/T 808: 0 ok, 1 failure, 2 message error, 3 not supported
    text: str = ""


@dataclass(slots=True, kw_only=True)
class Unsupported(Message):
    """A well-framed message of a type the codec does not know; answered, counted, never fatal."""

    body: bytes = b""


@dataclass(slots=True, kw_only=True)
class FrameError:
    """A frame that could not be decoded. Decoding continues with the next frame."""

    protocol: str
    reason: str
    raw: bytes = b""
    device: str = ""
    msg_id: int = 0
    serial: int = 0


Decoded = Message | FrameError


def storable_text(text: str) -> bool:
    """Whether PostgreSQL text and jsonb can hold this string: no NUL, no lone surrogate (which JSON
    \\u escapes allow). One such string would make the database refuse a whole batch."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
