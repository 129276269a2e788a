"""The terminal side of a dispatch message: a JT/T 808 test terminal that answers every 0x8300 text with 0x0001."""

from __future__ import annotations

import struct

from protocols import jt808
from tests.terminal import Terminal


async def answer_texts(terminal: Terminal, texts: list[str]) -> None:
    """Reads every frame the platform sends from now on (the acks of later reports included); answers each
    0x8300 with a success 0x0001 and keeps its text in `texts`. Runs until cancelled or disconnected."""
    while True:
        frame = jt808.decode_platform_frame(await terminal.recv(wait=3600))
        if frame.msg_id == jt808.MSG_TEXT and frame.packages is None:
            texts.append(frame.value.text)
            reply = struct.pack(">HHB", frame.serial, jt808.MSG_TEXT, jt808.RESULT_OK)
            await terminal.send(jt808.MSG_TERMINAL_RESPONSE, reply)
