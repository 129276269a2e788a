"""The real server (`telematics ... serve`) under cProfile, for `python -m bench.e2e --profile FILE`.

    python -m bench.profile_server OUT.prof --config FILE serve

Runs `telematics.cli.main` in this process with the profiler on; SIGTERM stops the server as usual
and the profile is written when it has shut down. `python -m bench.profile_server --show OUT.prof
REPORTS` prints where the time went, by stage, in microseconds per report.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
from collections import defaultdict

# Stage of a function, by (file fragment, function name or "*"); first match wins. Self time only,
# so a function's callees are counted in their own stage.
STAGES: list[tuple[str, str, str]] = [
    ("protocols/jt808.py", "ack_for", "acks: encode"),
    ("protocols/jt808.py", "encode_general_response", "acks: encode"),
    ("protocols/jt808.py", "encode_frame", "acks: encode"),
    ("protocols/jt808.py", "_encode", "acks: encode"),
    ("protocols/jt808.py", "escape", "acks: encode"),
    ("protocols/jt808.py", "check_code", "acks: encode"),
    ("protocols/jt808.py", "phone_field", "acks: encode"),
    ("protocols/gt06.py", "encode_", "acks: encode"),
    ("protocols/h02.py", "ack_for", "acks: encode"),
    ("ingest/terminal.py", "_send", "acks: transport.write"),
    ("~", "<method 'write' of 'uvloop.loop.UVStream' objects>", "acks: transport.write"),
    ("~", "<method 'write' of 'uvloop.loop.TCPTransport' objects>", "acks: transport.write"),
    ("protocols/", "*", "decode"),
    ("ingest/fixes.py", "*", "to_row + h3"),
    ("h3", "*", "to_row + h3"),
    ("~", "<built-in method h3._cy", "to_row + h3"),
    ("ingest/reports.py", "*", "ReportSink.submit"),
    ("ingest/batcher.py", "_write", "batcher"),
    ("ingest/batcher.py", "*", "batcher"),
    ("store/batch.py", "from_rows", "batcher: PositionBatch.from_rows"),
    ("store/batch.py", "to_micros", "batcher: PositionBatch.from_rows"),
    ("store/copy_binary.py", "*", "COPY: binary payload"),
    ("store/positions.py", "*", "COPY: PositionWriter"),
    ("psycopg", "*", "COPY: psycopg"),
    ("ingest/terminal.py", "*", "connection: data_received/dispatch"),
    ("ingest/jt808_server.py", "*", "connection: data_received/dispatch"),
    ("uvloop", "*", "event loop"),
    ("asyncio", "*", "event loop"),
    ("~", "<method 'run_until_complete' of 'uvloop.loop.Loop' objects>", "event loop"),
    ("~", "<built-in method select.epoll", "event loop"),
]


def stage_of(filename: str, name: str) -> str:
    for frag, fn, stage in STAGES:
        if frag == "~":
            if filename == "~" and name.startswith(fn):
                return stage
            continue
        if frag in filename and (fn == "*" or name == fn or (fn.endswith("_") and name.startswith(fn))):
            return stage
    if filename == "~":
        if "datetime" in name or "numpy" in name or "array" in name:
            return "builtins (datetime, numpy, ...)"
        return "builtins (other)"
    return "other python"


def breakdown(path: str) -> tuple[dict[str, float], float]:
    stats = pstats.Stats(path)
    by_stage: dict[str, float] = defaultdict(float)
    total = 0.0
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        by_stage[stage_of(filename, name)] += tottime
        total += tottime
    return dict(by_stage), total


def show(path: str, reports: int) -> None:
    by_stage, total = breakdown(path)
    print(f"{'stage':40} {'s':>8} {'share':>7} {'us/report':>10}")
    for stage, seconds in sorted(by_stage.items(), key=lambda kv: -kv[1]):
        print(f"{stage:40} {seconds:8.2f} {seconds / total:7.1%} {seconds / reports * 1e6:10.2f}")
    print(f"{'total (profiled)':40} {total:8.2f} {1:7.1%} {total / reports * 1e6:10.2f}")
    print("\ntop functions by self time:")
    pstats.Stats(path).sort_stats("tottime").print_stats(25)


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "--show":
        show(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
        return
    out, argv = sys.argv[1], sys.argv[2:]
    from telematics import cli

    profiler = cProfile.Profile()
    try:
        code = profiler.runcall(cli.main, argv)
    finally:
        profiler.dump_stats(out)
    sys.exit(code)


if __name__ == "__main__":
    main()
