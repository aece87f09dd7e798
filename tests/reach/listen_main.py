"""A stand-in for `edgecheck listen` (until the lead wires the CLI): the same library calls.

    python3 listen_main.py --token TOKEN --duration S --summary PATH [--node ADDR] PORT/PROTO...

Prints the banner (token, reach command), "READY", then one line per event; on the duration,
SIGINT or SIGTERM it writes the JSON summary (edgecheck/listen/v1) to PATH and the text summary
to stdout, and exits 0. Runs inside a test namespace (started with `ip netns exec`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from edgecheck.reach import protocol  # noqa: E402
from edgecheck.reach.listener import Listener, PortSpec  # noqa: E402
from edgecheck.reach.summary import event_line, listen_banner, listen_summary_json, listen_summary_text, reach_command  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--token", required=True)
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--summary", required=True)
    ap.add_argument("--node", action="append", default=[])
    ap.add_argument("--max-connections", type=int, default=256)
    ap.add_argument("ports", nargs="+")
    args = ap.parse_args()
    specs = [PortSpec(int(p.split("/")[0]), p.split("/")[1]) for p in args.ports]
    listener = Listener(specs, args.token, on_event=lambda e: print(event_line(e), flush=True),
                        max_connections=args.max_connections)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: listener.stop(signal.Signals(signum).name))
    with listener:
        print(listen_banner(listener.bindings, args.token, protocol.key_fingerprint(listener.key), args.duration,
                            reach_command(args.token, args.node)), flush=True)
        print("READY", flush=True)
        summary = listener.serve(args.duration)
    doc = listen_summary_json(summary, agent_version="test", generated_at=time.time(), params={"ports": args.ports})
    tmp = args.summary + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=1)
    os.replace(tmp, args.summary)
    print(listen_summary_text(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
