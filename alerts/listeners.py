"""Who hears of alert changes (the live WebSocket, MQTT and webhook outputs), and how they are told."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from store.alerts import Alert

log = logging.getLogger("telematics.alerts")

Listener = Callable[[Alert], None]  # synchronous, must not block


def tell(listeners: Iterable[Listener], changed: Iterable[Alert]) -> None:
    """Each listener of each changed alert; one that fails is logged and the others are still told."""
    listeners = list(listeners)
    for alert in changed:
        for listener in listeners:
            try:
                listener(alert)
            except Exception:
                log.exception("alert listener %r failed", listener)
