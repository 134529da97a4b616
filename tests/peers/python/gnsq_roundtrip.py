#!/usr/bin/env python3
"""Round trip of N messages through nsqd with gnsq (the gevent NSQ client), unchanged.

gnsq.Producer publishes N distinct bodies over TCP; gnsq.Consumer (nsqd_tcp_addresses, no
lookupd) requeues every message on its first attempt (REQ with delay 0, no backoff) and finishes
it on the second. Exit 0 only if all N distinct bodies were finished, each at attempts 2, within
the timeout.

MODE (optional, default plain) adds one negotiated IDENTIFY feature to both clients:
  plain    nothing
  tls      tls_v1=True; the server certificate is verified against --ca (CERT_REQUIRED)
  snappy   snappy=True (needs python-snappy)
  deflate  deflate=True

gnsq.Producer itself cannot negotiate a feature (gnsq 1.0.2 bug, against any nsqd: the OK that
follows the upgrade reaches Producer.handle_response before the connection is registered, a
KeyError), so with a feature the messages are published with gnsq.NsqdTCPClient, gnsq's own
lower-level connection (PUB, then check_ok), and consumed with gnsq.Consumer as usual.

usage: gnsq_roundtrip.py NSQD_TCP_ADDRESS [--mode MODE] [--ca CA_PEM] [--count N] [--timeout S]
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import ssl  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gnsq  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("nsqd_tcp_address")
    parser.add_argument("--mode", choices=["plain", "tls", "snappy", "deflate"], default="plain")
    parser.add_argument("--ca", help="CA certificate (PEM) that signed nsqd's certificate")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--topic", default="gnsq_roundtrip")
    parser.add_argument("--channel", default="gnsq")
    args = parser.parse_args()

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    signal.alarm(int(args.timeout) + 15)

    options = {}
    if args.mode == "tls":
        if not args.ca:
            parser.error("--mode=tls needs --ca")
        options = {
            "tls_v1": True,
            "tls_options": {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": args.ca},
        }
    elif args.mode == "snappy":
        import snappy  # noqa: F401  (fail early and clearly if python-snappy is missing)

        options = {"snappy": True}
    elif args.mode == "deflate":
        options = {"deflate": True}
    feature = {"tls": "SSLSocket", "snappy": "SnappySocket", "deflate": "DefalteSocket"}.get(
        args.mode
    )

    count = args.count
    bodies = [("gnsq-%05d" % index).encode() for index in range(count)]
    expected = set(bodies)
    requeued = set()
    finished = {}  # body -> attempts at FIN
    unexpected = []
    done = gevent.event.Event()
    started = time.monotonic()

    def handler(consumer, message):
        body = bytes(message.body)
        if body not in expected:
            unexpected.append(body)
            message.finish()
            return
        if message.attempts == 1:
            requeued.add(body)
            message.requeue(0, backoff=False)
            return
        if body in finished:
            unexpected.append(body)
        finished[body] = message.attempts
        message.finish()
        if len(finished) == count:
            done.set()

    consumer = gnsq.Consumer(
        args.topic,
        args.channel,
        nsqd_tcp_addresses=[args.nsqd_tcp_address],
        max_in_flight=100,
        max_tries=0,
        requeue_delay=0,
        backoff_on_requeue=False,
        **options,
    )
    consumer.on_message.connect(handler, weak=False)
    host, port = args.nsqd_tcp_address.rsplit(":", 1)
    if feature is None:
        producer = gnsq.Producer(nsqd_tcp_addresses=[args.nsqd_tcp_address])
        producer_connections = lambda: list(producer._connections.queue)  # noqa: E731
    else:
        producer = gnsq.NsqdTCPClient(host, int(port), **options)
        producer_connections = lambda: [producer]  # noqa: E731

    result = None
    published_ok = 0
    publish_errors = []
    deadline = started + args.timeout
    consumer.start(block=False)
    try:
        if feature is None:
            producer.start()
            pending = [producer.publish(args.topic, body, raise_error=False) for body in bodies]
            for response in pending:
                try:
                    response.get(timeout=max(0.1, deadline - time.monotonic()))
                    published_ok += 1
                except Exception as error:  # noqa: BLE001
                    publish_errors.append(repr(error))
        else:
            producer.connect()
            producer.identify()
            for body in bodies:
                try:
                    producer.publish(args.topic, body)
                    producer.check_ok()
                    published_ok += 1
                except Exception as error:  # noqa: BLE001
                    publish_errors.append(repr(error))
                    break
        if publish_errors:
            result = "publish failed: %s" % publish_errors[0]
        elif done.wait(timeout=max(0.1, deadline - time.monotonic())):
            result = "done"
        else:
            result = "timeout after %.0f s" % args.timeout
    finally:
        # Give the last FINs time to leave the socket buffers before closing.
        gevent.sleep(0.5)
        # gnsq logs the connections closed below as lost.
        logging.getLogger("gnsq").setLevel(logging.CRITICAL)
        # Which stream each connection ended up on (gnsq swaps the socket after IDENTIFY).
        negotiated = [
            type(conn.stream.socket).__name__
            for conn in list(consumer._connections) + producer_connections()
            if conn.stream.socket is not None
        ]
        consumer.close()
        consumer.join(timeout=5)
        if feature is None:
            producer.close()
            producer.join(timeout=5)
        else:
            producer.close_stream()

    wrong_attempts = {body: attempts for body, attempts in finished.items() if attempts != 2}
    missing = expected - set(finished)
    print(
        "gnsq %s %s round trip: result=%s published_ok=%d/%d requeued=%d finished=%d "
        "wrong_attempts=%d missing=%d unexpected=%d negotiated=%r elapsed=%.2fs"
        % (
            gnsq.__version__,
            args.mode,
            result,
            published_ok,
            count,
            len(requeued),
            len(finished),
            len(wrong_attempts),
            len(missing),
            len(unexpected),
            negotiated,
            time.monotonic() - started,
        )
    )
    ok = (
        result == "done"
        and published_ok == count
        and not wrong_attempts
        and not missing
        and not unexpected
        and len(requeued) == count
        and len(negotiated) == 2
        and (feature is None or all(kind == feature for kind in negotiated))
    )
    if not ok:
        if wrong_attempts:
            print("wrong attempts (first 10): %r" % list(wrong_attempts.items())[:10])
        if missing:
            print("missing (first 10): %r" % sorted(missing)[:10])
        if unexpected:
            print("unexpected (first 10): %r" % unexpected[:10])
        if publish_errors:
            print("publish errors (first 10): %r" % publish_errors[:10])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
