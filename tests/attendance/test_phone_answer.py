"""The server's answer to a phone's check-in or check-out (protocols.phone_mqtt), in JSON and msgpack."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgpack
import pytest

from protocols import phone_mqtt
from protocols.messages import ProtocolError

AT = datetime(2026, 11, 18, 23, 58, tzinfo=UTC)


def test_the_answer_names_the_event_its_time_and_the_verdict() -> None:
    refused = phone_mqtt.encode_attendance_answer("checkin", AT, False, "implausible_move")
    assert json.loads(refused) == {"_type": "attendance", "event": "checkin", "tst": 1_795_046_280,
                                   "accepted": False, "reason": "implausible_move"}  # fmt: skip
    accepted = phone_mqtt.encode_attendance_answer("checkout", AT, True, None, fmt="msgpack")
    assert msgpack.unpackb(accepted) == {"_type": "attendance", "event": "checkout", "tst": 1_795_046_280,
                                         "accepted": True, "reason": None}  # fmt: skip
    assert phone_mqtt.message_topic_for("insp-7") == "city/insp-7/message"


def test_only_check_ins_and_check_outs_are_answered() -> None:
    with pytest.raises(ProtocolError):
        phone_mqtt.encode_attendance_answer("location", AT, True, None)
    with pytest.raises(ProtocolError):
        phone_mqtt.encode_attendance_answer("checkin", AT.replace(tzinfo=None), True, None)
