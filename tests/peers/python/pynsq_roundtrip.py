#!/usr/bin/env python3
"""Round trip of N messages through nsqd with the official Python client (pynsq), unchanged:
the Writer publishes, the Reader REQs each message on its first attempt and FINs it on the second.

MODE is one of:
  plain    no IDENTIFY feature
  tls      tls_v1=True; the server certificate is verified against --ca (CERT_REQUIRED)
  snappy   snappy=True (pynsq needs python-snappy)
  deflate  deflate=True (level 6)
With a feature, both the Writer and the Reader must negotiate it.

nsq.Writer publishes N distinct bodies over TCP; nsq.Reader (nsqd_tcp_addresses, no lookupd)
requeues every message on its first attempt (REQ with delay 0, no backoff) and finishes it on the
second. Exit 0 only if all N distinct bodies were finished, each at attempts 2, within the timeout.

usage: pynsq_roundtrip.py MODE NSQD_TCP_ADDRESS [--ca CA_PEM] [--count N] [--timeout SECONDS] [--topic T]
"""

import argparse
import logging
import signal
import ssl
import sys
import time

import nsq
import tornado.ioloop


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["plain", "tls", "snappy", "deflate"])
    parser.add_argument("nsqd_tcp_address")
    parser.add_argument("--ca", help="CA certificate (PEM) that signed nsqd's certificate")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--topic", default="pynsq_roundtrip")
    parser.add_argument("--channel", default="pynsq")
    args = parser.parse_args()

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    # Last resort if the IO loop itself hangs.
    signal.alarm(int(args.timeout) + 15)

    count = args.count
    bodies = [("pynsq-%05d" % index).encode() for index in range(count)]
    expected = set(bodies)
    state = {
        "published_ok": 0,
        "publish_errors": [],
        "publishing": False,
        "requeued": set(),
        "finished": {},  # body -> attempts at FIN
        "unexpected": [],
        "result": None,
    }
    io_loop = tornado.ioloop.IOLoop.current()
    started = time.monotonic()

    def stop(result):
        if state["result"] is None:
            state["result"] = result
            # pynsq logs its own pending reads on the connections closed here as errors.
            logging.getLogger("nsq").setLevel(logging.CRITICAL)
            reader.close()
            writer_close()
            # Give the FINs written just now time to leave the socket buffers.
            io_loop.call_later(0.5, io_loop.stop)

    def writer_close():
        for conn in list(writer.conns.values()):
            conn.close()

    def on_published(conn, data):
        if isinstance(data, nsq.Error):
            state["publish_errors"].append(str(data))
            stop("publish failed: %s" % data)
        else:
            state["published_ok"] += 1
            maybe_done()

    def maybe_done():
        if len(state["finished"]) == count and state["published_ok"] == count:
            io_loop.add_callback(stop, "done")

    def start_publishing():
        if state["publishing"]:
            return
        if not writer.conns:
            io_loop.call_later(0.05, start_publishing)
            return
        state["publishing"] = True
        for body in bodies:
            writer.pub(args.topic, body, callback=on_published)

    def handler(message):
        body = bytes(message.body)
        if body not in expected:
            state["unexpected"].append(body)
            return True
        if message.attempts == 1:
            state["requeued"].add(body)
            message.requeue(delay=0, backoff=False)
            return None
        if body in state["finished"]:
            state["unexpected"].append(body)
        state["finished"][body] = message.attempts
        maybe_done()
        return True

    def on_timeout():
        stop("timeout after %.0f s" % args.timeout)

    if args.mode == "tls":
        if not args.ca:
            parser.error("tls needs --ca")
        options = {
            "tls_v1": True,
            "tls_options": {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": args.ca},
        }
    elif args.mode == "snappy":
        import snappy  # noqa: F401  (fail early and clearly if python-snappy is missing)

        options = {"snappy": True}
    elif args.mode == "deflate":
        options = {"deflate": True, "deflate_level": 6}
    else:
        options = {}
    feature = {"tls": "tls_v1", "snappy": "snappy", "deflate": "deflate"}.get(args.mode)
    negotiated = []

    def check_identify_response(data):
        # Every connection (Writer's and Reader's) must really have negotiated the feature.
        if feature is None:
            return
        if isinstance(data, dict) and data.get(feature):
            negotiated.append(feature)
        else:
            io_loop.add_callback(stop, "nsqd did not negotiate %s: %r" % (feature, data))

    class Writer(nsq.Writer):
        def _on_connection_identify_response(self, conn, data, **kwargs):
            check_identify_response(data)
            return super()._on_connection_identify_response(conn, data, **kwargs)

    class Reader(nsq.Reader):
        def _on_connection_identify_response(self, conn, data, **kwargs):
            check_identify_response(data)
            return super()._on_connection_identify_response(conn, data, **kwargs)

    writer = Writer([args.nsqd_tcp_address], **options)
    reader = Reader(
        topic=args.topic,
        channel=args.channel,
        message_handler=handler,
        nsqd_tcp_addresses=[args.nsqd_tcp_address],
        max_in_flight=100,
        max_tries=0,
        **options,
    )
    io_loop.call_later(0.05, start_publishing)
    io_loop.call_later(args.timeout, on_timeout)
    io_loop.start()

    finished = state["finished"]
    wrong_attempts = {body: attempts for body, attempts in finished.items() if attempts != 2}
    missing = expected - set(finished)
    print(
        "pynsq %s %s round trip: result=%s published_ok=%d/%d requeued=%d finished=%d "
        "wrong_attempts=%d missing=%d unexpected=%d negotiated=%r elapsed=%.2fs"
        % (
            nsq.__version__ if hasattr(nsq, "__version__") else "?",
            args.mode,
            state["result"],
            state["published_ok"],
            count,
            len(state["requeued"]),
            len(finished),
            len(wrong_attempts),
            len(missing),
            len(state["unexpected"]),
            negotiated,
            time.monotonic() - started,
        )
    )
    ok = (
        state["result"] == "done"
        and state["published_ok"] == count
        and not wrong_attempts
        and not missing
        and not state["unexpected"]
        and len(state["requeued"]) == count
        and (feature is None or len(negotiated) >= 2)
    )
    if not ok:
        if wrong_attempts:
            print("wrong attempts (first 10): %r" % list(wrong_attempts.items())[:10])
        if missing:
            print("missing (first 10): %r" % sorted(missing)[:10])
        if state["unexpected"]:
            print("unexpected (first 10): %r" % state["unexpected"][:10])
        if state["publish_errors"]:
            print("publish errors (first 10): %r" % state["publish_errors"][:10])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
