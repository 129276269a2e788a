"""Alert changes sent to other systems: an MQTT topic and a webhook, besides the dispatcher's WebSocket.

Each change (an alert raised or ended by the engine, acknowledged or closed by a dispatcher) is one
JSON document: the API's ALERT (`routes.alert_json`) and `"event"`: raised, ended, acknowledged or
closed.

- MQTT: published to `<prefix>/<unit id or none>/<alert kind>`, QoS 1, not retained, on the server's
  own MQTT connection. While that connection is down the changes wait for it.
- Webhook: POSTed to the URL; with a secret, `X-Telematics-Signature: sha256=<hex HMAC-SHA256 of the
  body>`. A 2xx answer delivers it. A connection error, a timeout, 408, 429 or 5xx is tried again
  after the retry delay, doubled each time, at most `retries` times; any other answer (a 4xx, a
  redirect) fails it at once, since sending the same body again would get the same answer.

Each output has a bounded queue and one task that delivers its changes in order (one is delivered
or given up before the next is tried), so a slow webhook holds up neither MQTT nor the alert
engine. The listeners only queue: the database is the source of truth, so a full queue drops the
change (counted, logged) rather than wait. Delivery is at least once: a receiver may see the same
alert id and event twice (a retry after a timeout) and can ignore the second.

Counters: `alerts.<output>.delivered`, `.retries`, `.failed` (given up) and `.dropped` (the queue
was full, or the change was still waiting when the server stopped); `<output>` is mqtt or webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from alerts.routes import alert_json
from store.alerts import Alert

log = logging.getLogger("telematics.alerts")

Publish = Callable[[str, bytes], Awaitable[None]]  # (topic, payload): QoS 1, not retained
Count = Callable[[str, int], None]  # (counter name, increment): the server's Counters.inc
SIGNATURE_HEADER = "X-Telematics-Signature"


@dataclass(frozen=True, slots=True)
class Change:
    alert: Alert
    event: str  # raised, ended, acknowledged, closed
    body: bytes  # the JSON document, encoded once for every output


class DeliveryError(Exception):
    """A destination's refusal; `final`: trying again would not change the answer."""

    def __init__(self, reason: str, *, final: bool = False) -> None:
        super().__init__(reason)
        self.final = final


def document(alert: Alert, event: str) -> bytes:
    return json.dumps({"event": event, **alert_json(alert)}, ensure_ascii=False, separators=(",", ":")).encode()


def topic_for(prefix: str, alert: Alert) -> str:
    return f"{prefix}/{'none' if alert.org_unit_id is None else alert.org_unit_id}/{alert.kind}"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _reason(e: Exception) -> str:
    return str(e) or type(e).__name__  # a timeout says nothing itself


class _Output:
    """One destination: a bounded queue and one task delivering in order, trying again with backoff.
    `attempts` None: until delivered (or the server stops)."""

    def __init__(
        self,
        name: str,
        send: Callable[[Change], Awaitable[None]],
        count: Count,
        *,
        queue_size: int,
        attempts: int | None,
        delay_s: float,
        max_delay_s: float,
    ) -> None:
        self.name = name
        self.send = send
        self.count = count
        self.attempts = attempts
        self.delay_s = delay_s
        self.max_delay_s = max_delay_s
        self._queue: asyncio.Queue[Change] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self._busy = False  # a change taken from the queue and not yet delivered or given up
        self._closing = False
        self._dropping = False  # logged once while the queue stays full
        self._failing = False  # logged once while the destination keeps failing

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"alert-output-{self.name}")

    def put(self, change: Change) -> None:
        if self._closing:
            self.count(f"alerts.{self.name}.dropped", 1)
            return
        try:
            self._queue.put_nowait(change)
            self._dropping = False
        except asyncio.QueueFull:
            self.count(f"alerts.{self.name}.dropped", 1)
            if not self._dropping:
                self._dropping = True
                log.error("alert output %s: queue full (%d); dropping changes", self.name, self._queue.maxsize)

    async def close(self, flush_s: float) -> None:
        """Deliver what is queued within `flush_s` seconds; what is left then is dropped (counted)."""
        self._closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), flush_s)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        left = self._queue.qsize() + self._busy
        if left:
            self.count(f"alerts.{self.name}.dropped", left)
            log.warning("alert output %s: %d changes not delivered at shutdown", self.name, left)

    async def _run(self) -> None:
        while True:
            change = await self._queue.get()
            self._busy = True  # stays so when cancelled at shutdown: counted as dropped then
            try:
                await self._deliver(change)
            except Exception:  # a bug, not a refusal: the next change must still go
                self.count(f"alerts.{self.name}.failed", 1)
                log.exception("alert output %s: alert %d %s not delivered", self.name, change.alert.id, change.event)
            self._busy = False
            self._queue.task_done()

    async def _deliver(self, change: Change) -> None:
        delay = self.delay_s
        attempt = 1
        while True:
            try:
                await self.send(change)
            except Exception as e:
                final = isinstance(e, DeliveryError) and e.final
                if final or (self.attempts is not None and attempt >= self.attempts):
                    self.count(f"alerts.{self.name}.failed", 1)
                    log.error(
                        "alert output %s: alert %d %s given up after %d attempts (%s)",
                        self.name, change.alert.id, change.event, attempt, _reason(e),
                    )  # fmt: skip
                    return
                if not self._failing:
                    self._failing = True
                    log.warning("alert output %s failing (%s); trying again", self.name, _reason(e))
                self.count(f"alerts.{self.name}.retries", 1)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_delay_s)
                attempt += 1
                continue
            self.count(f"alerts.{self.name}.delivered", 1)
            if self._failing:
                self._failing = False
                log.info("alert output %s delivering again", self.name)
            return


class AlertOutputs:
    """Queues each alert change for every output configured; none configured: does nothing.

    `changed` is the alert engine's listener (an alert raised, or its end recorded), `acknowledged`
    the ack route's (acknowledged or closed by a dispatcher): each source knows its own events, which
    the alert alone would not tell apart (an acknowledged alert that ends vs. an ended one acknowledged).
    """

    def __init__(
        self,
        count: Count,
        *,
        publish: Publish | None = None,
        topic_prefix: str = "city/alerts",
        webhook_url: str = "",
        webhook_secret: str = "",
        webhook_timeout_s: float = 10.0,
        webhook_retries: int = 5,
        webhook_retry_delay_s: float = 1.0,
        queue_size: int = 10_000,
    ) -> None:
        self.publish = publish
        self.topic_prefix = topic_prefix
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.webhook_timeout_s = webhook_timeout_s
        self.outputs: list[_Output] = []
        if publish is not None and topic_prefix:
            # The MQTT connection reconnects by itself: wait for it rather than give up.
            self.outputs.append(
                _Output("mqtt", self._publish, count, queue_size=queue_size, attempts=None, delay_s=0.5, max_delay_s=5)
            )
        if webhook_url:
            self.outputs.append(
                _Output("webhook", self._post, count, queue_size=queue_size, attempts=webhook_retries + 1,
                        delay_s=webhook_retry_delay_s, max_delay_s=60)
            )  # fmt: skip
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self.webhook_url:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.webhook_timeout_s))
        for output in self.outputs:
            output.start()

    async def close(self, flush_s: float = 5.0) -> None:
        """Flush what is queued, for `flush_s` seconds at most."""
        deadline = time.monotonic() + flush_s
        await asyncio.gather(*(o.close(max(0.0, deadline - time.monotonic())) for o in self.outputs))
        if self._http is not None:
            await self._http.close()

    def changed(self, alert: Alert) -> None:
        self.put(alert, "ended" if alert.ended_at is not None else "raised")

    def acknowledged(self, alert: Alert) -> None:
        self.put(alert, "closed" if alert.state == "closed" else "acknowledged")

    def put(self, alert: Alert, event: str) -> None:
        if not self.outputs:
            return
        change = Change(alert, event, document(alert, event))
        for output in self.outputs:
            output.put(change)

    async def _publish(self, change: Change) -> None:
        assert self.publish is not None
        await self.publish(topic_for(self.topic_prefix, change.alert), change.body)

    async def _post(self, change: Change) -> None:
        assert self._http is not None
        headers = {"Content-Type": "application/json"}
        if self.webhook_secret:
            headers[SIGNATURE_HEADER] = signature(self.webhook_secret, change.body)
        # No redirects: the signed body goes to the configured URL or nowhere.
        async with self._http.post(self.webhook_url, data=change.body, headers=headers, allow_redirects=False) as r:
            if 200 <= r.status < 300:
                return
            raise DeliveryError(f"HTTP {r.status}", final=r.status not in (408, 429) and r.status < 500)
