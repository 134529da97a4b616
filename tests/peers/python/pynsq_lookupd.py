#!/usr/bin/env python3
"""Discovery through nsqlookupd with the official Python client (pynsq), unchanged.

nsq.Reader is given only lookupd HTTP addresses (lookupd_poll_interval=1); it must find every nsqd
producing the topic and receive the messages the test published beforehand: bodies
"n<node>-<index>" for node in 0..NODES and index in 0..COUNT. Each message is FINed. Exit 0 only if
all NODES*COUNT distinct bodies arrived (and nothing unexpected) within the timeout.

usage: pynsq_lookupd.py --lookupd URL [--lookupd URL ...] --topic T --channel C
                        [--nodes N] [--count N] [--timeout SECONDS]
"""

import argparse
import logging
import signal
import sys
import time

import nsq
import tornado.ioloop


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lookupd", action="append", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--channel", required=True)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    # Last resort if the IO loop itself hangs.
    signal.alarm(int(args.timeout) + 15)

    expected = {
        ("n%d-%03d" % (node, index)).encode()
        for node in range(args.nodes)
        for index in range(args.count)
    }
    state = {"received": set(), "duplicates": 0, "unexpected": [], "result": None}
    io_loop = tornado.ioloop.IOLoop.current()
    started = time.monotonic()

    def stop(result):
        if state["result"] is None:
            state["result"] = result
            logging.getLogger("nsq").setLevel(logging.CRITICAL)
            reader.close()
            # Give the FINs written just now time to leave the socket buffers.
            io_loop.call_later(0.5, io_loop.stop)

    def handler(message):
        body = bytes(message.body)
        if body not in expected:
            state["unexpected"].append(body)
        elif body in state["received"]:
            state["duplicates"] += 1
        else:
            state["received"].add(body)
            if state["received"] == expected:
                io_loop.add_callback(stop, "done")
        return True

    reader = nsq.Reader(
        topic=args.topic,
        channel=args.channel,
        message_handler=handler,
        lookupd_http_addresses=args.lookupd,
        lookupd_poll_interval=1,
        max_in_flight=100,
    )
    io_loop.call_later(args.timeout, lambda: stop("timeout after %.0f s" % args.timeout))
    io_loop.start()

    missing = expected - state["received"]
    print(
        "pynsq lookupd discovery: result=%s received=%d/%d duplicates=%d missing=%d "
        "unexpected=%d elapsed=%.2fs"
        % (
            state["result"],
            len(state["received"]),
            len(expected),
            state["duplicates"],
            len(missing),
            len(state["unexpected"]),
            time.monotonic() - started,
        )
    )
    ok = state["result"] == "done" and not missing and not state["unexpected"]
    if not ok:
        if missing:
            print("missing (first 10): %r" % sorted(missing)[:10])
        if state["unexpected"]:
            print("unexpected (first 10): %r" % state["unexpected"][:10])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
