"""The connection to NATS and the stream every role agrees on."""

from __future__ import annotations

import logging

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from distributed.wire import STREAM, SUBJECT_PREFIX

log = logging.getLogger("telematics.distributed")


async def connect(url: str, name: str) -> Client:
    """Reconnects for ever: a NATS server that is away delays the roles, it does not stop them."""

    async def error(e: Exception) -> None:
        log.warning("NATS: %s", e)

    async def disconnected() -> None:
        log.warning("NATS: disconnected from %s", url)

    async def reconnected() -> None:
        log.info("NATS: reconnected to %s", url)

    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        error_cb=error,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
    )


async def ensure_stream(js: JetStreamContext, max_age_h: float) -> None:
    """The positions stream, a work queue: a report is kept until its partition's processor has acked it
    (after its commit), or `max_age_h` at most. File storage: a nats-server restart keeps what it holds."""
    config = StreamConfig(
        name=STREAM,
        subjects=[f"{SUBJECT_PREFIX}.*"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        max_age=max_age_h * 3600,
        duplicate_window=120,
    )
    try:
        await js.stream_info(STREAM)
    except NotFoundError:
        await js.add_stream(config)
        log.info("NATS: stream %s created", STREAM)
