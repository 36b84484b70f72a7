"""`python -m wanbatch.testing.fakeprovider --port 8765`: run the fake provider until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import sys
import threading

from wanbatch.testing.fakeprovider.server import FakeProvider
from wanbatch.testing.fakeprovider.state import FAULT_KINDS


def _fault(text: str) -> dict[str, object]:
    """KIND[:PHASE[:TIMES[:MODEL]]], e.g. 429:submit:2 or failed:result:1:wan2.1-t2v"""
    kind, phase, times, model = ([*text.split(":", 3), "", "", ""])[:4]
    rule: dict[str, object] = {"kind": kind}
    if phase:
        rule["phase"] = phase
    if times:
        rule["times"] = int(times)
    if model:
        rule["model"] = model
    return rule


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wanbatch.testing.fakeprovider", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency", type=float, default=2.0, help="seconds from submit to a finished job")
    parser.add_argument("--response-delay", type=float, default=0.0, help="seconds added to every API answer")
    parser.add_argument("--url-ttl", type=float, default=3600.0, help="seconds a video URL stays valid")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        type=_fault,
        metavar="KIND[:PHASE[:TIMES[:MODEL]]]",
        help=f"inject a fault (repeatable); kinds: {', '.join(FAULT_KINDS)}",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")

    fake = FakeProvider(
        args.host, args.port, latency_s=args.latency, response_delay_s=args.response_delay, url_ttl_s=args.url_ttl
    )
    for rule in args.fault:
        fake.fault(**rule)  # type: ignore[arg-type]
    fake.start()
    print(f"fake provider on {fake.url} (GMI Cloud, AI/ML API, Novita AI); stats at {fake.url}/_fake/stats")
    print(
        f"  wanbatch recipe=remote_mix backend.base_url={fake.url} "
        f"backends.<name>.base_url={fake.url}   (any non-empty API keys will do)"
    )
    sys.stdout.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
