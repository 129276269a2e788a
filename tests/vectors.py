"""Access to the captured device messages in ../shared/vectors/ (read in place, never copied)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "vectors" / "traccar-samples.json"


@cache
def _all() -> list[dict[str, Any]]:
    with VECTORS.open(encoding="utf-8") as f:
        return json.load(f)


def records(protocol: str) -> list[dict[str, Any]]:
    """The captures of one protocol in test order."""
    return [r for r in _all() if r["protocol"] == protocol]


def payload_bytes(record: dict[str, Any]) -> bytes:
    if record["kind"] == "hex":
        return bytes.fromhex(record["payload"])
    return record["payload"].encode("latin-1")
