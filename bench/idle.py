"""Holds idle TCP connections open to a port, for the server's RSS per idle connection.

Connects `--count` sockets (one after another, so the listener's backlog never overflows), prints
`ready N`, then keeps them open, silent, until its standard input closes.

    python -m bench.idle --port 5015 --count 10000
"""

from __future__ import annotations

import argparse
import resource
import socket
import sys


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--source", default="127.0.0.1", help="local address (another one gives ~28,000 more ports)")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.count + 16 > hard:
        sys.exit(f"idle: {args.count} connections need more than the {hard} descriptors this process may open")
    held = []
    for _ in range(args.count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((args.source, 0))
        s.connect((args.host, args.port))
        held.append(s)
    print(f"ready {len(held)}", flush=True)
    sys.stdin.read()  # the harness closes our stdin when it has measured
    for s in held:
        s.close()


if __name__ == "__main__":
    main()
