"""Several worker processes on the same ports (SO_REUSEPORT), kept alive by the parent.

The kernel spreads new connections over the workers; a terminal's connection lives in one of
them for its whole life. Each worker writes its own batches (the database serialises nothing:
rows of different devices, unique on device + fix time). The parent prepares the database once,
starts the workers with the `spawn` method (no state shared by fork), restarts a worker that
dies, and stops them all on SIGINT/SIGTERM.

Downlinks (text messages and commands for one terminal, not built yet) are to reach the worker
holding that terminal's connection this way: the API stores the command and announces it with
PostgreSQL `NOTIFY downlink, '<device id>'`; every worker LISTENs and the one with a connection for
that device sends it; a terminal without a connection gets it when it next authenticates or logs in.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import signal
import time
from multiprocessing.process import BaseProcess

from telematics.config import Settings

log = logging.getLogger("telematics.workers")


def _worker_main(settings: Settings, index: int) -> None:
    import uvloop

    from telematics.server import Server

    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s %(levelname)s worker{index} %(name)s: %(message)s",
    )

    async def run() -> None:
        server = Server(settings, worker=index, reuse_port=True)
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.close()

    uvloop.run(run())


def run_workers(settings: Settings) -> int:
    """Run `settings.workers` workers until SIGINT/SIGTERM; the database must be prepared already."""
    ctx = mp.get_context("spawn")
    workers: dict[int, BaseProcess] = {}
    stopping = False

    def start(index: int) -> None:
        proc = ctx.Process(target=_worker_main, args=(settings, index), name=f"telematics-worker{index}")
        proc.start()
        workers[index] = proc

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for i in range(settings.workers):
        start(i)
    restarts: dict[int, float] = {}
    while not stopping:
        time.sleep(0.2)
        for index, proc in list(workers.items()):
            if not proc.is_alive() and not stopping:
                log.error("worker %d exited with %s; starting it again", index, proc.exitcode)
                # Back off when a worker keeps dying at start (say, the database is away).
                if time.monotonic() - restarts.get(index, 0.0) < 5:
                    time.sleep(1)
                restarts[index] = time.monotonic()
                start(index)
    for proc in workers.values():
        if proc.is_alive() and proc.pid is not None:
            proc.terminate()  # SIGTERM: the worker writes what is pending, then exits
    for proc in workers.values():
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
    return 0
