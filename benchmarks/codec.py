"""Scenario ``codec``: micro-benchmarks of the pure codecs, no sockets (operations per second, one core).

The comet's subscribe parser and message encoder, and the MessagePack-RPC codec, each next to plain
``msgpack`` doing the same packing/unpacking (the baseline: the ratio is the cost of the framing and checks).
There are no targets in issue 3 for these; they show where a push's CPU goes.
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import msgpack

from benchmarks.report import Report, plot_bars
from comet.message_codec import EncodedMessage
from comet.protocol import SubscribeParser, validate_subscribe
from benchmarks.subclient import tcp_subscribe_command
from thirdparty.rpc_codec import Decoder, encode_request, encode_response

NAME = "codec"
QUICK = {"seconds": 0.15}
MESSAGE = b'{"title":"hello","body":"you have a new notification","url":"/inbox/42"}'
MID = 17005481234567890


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=0.6, help="measured seconds per micro-benchmark")


def ops_per_second(work: Callable[[], object], seconds: float, per_call: int = 1) -> float:
    """Call ``work`` in batches until ``seconds`` have passed (after a short warm-up); calls x per_call / s."""
    for _ in range(200):
        work()
    batch, calls = 100, 0
    start = time.perf_counter()
    while True:
        for _ in range(batch):
            work()
        calls += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls * per_call / elapsed


def cases() -> dict[str, tuple[Callable[[], object], int]]:
    command = tcp_subscribe_command("user-12345", 300)
    request = encode_request(7, "CometRPC.PushPrivate", ["user-12345", MESSAGE, 600])
    burst = request * 100
    packed_params = msgpack.packb([0, 7, "CometRPC.PushPrivate", ["user-12345", MESSAGE, 600]], use_bin_type=True)
    decoder = Decoder()
    unpacker = msgpack.Unpacker(raw=False)

    def feed_burst() -> object:
        return decoder.feed(burst)

    def unpack_burst() -> object:
        unpacker.feed(burst)
        return list(unpacker)

    found: dict[str, tuple[Callable[[], object], int]] = {
        "comet.protocol: parse a TCP subscribe command": (lambda: SubscribeParser().feed(command), 1),
        "comet.protocol: validate WebSocket subscribe parameters":
            (lambda: validate_subscribe(b"user-12345", b"300", b"", b"1"), 1),
        "comet.message_codec: message + new-form TCP frame": (lambda: EncodedMessage(MESSAGE, MID).new_frame, 1),
        "comet.message_codec: message + old-form JSON": (lambda: EncodedMessage(MESSAGE, MID).old_json, 1),
        "thirdparty.rpc_codec: encode_request PushPrivate":
            (lambda: encode_request(7, "CometRPC.PushPrivate", ["user-12345", MESSAGE, 600]), 1),
        "  baseline msgpack.packb, same request":
            (lambda: msgpack.packb([0, 7, "CometRPC.PushPrivate", ["user-12345", MESSAGE, 600]],
                                   use_bin_type=True), 1),
        "thirdparty.rpc_codec: encode_response": (lambda: encode_response(7, None, {"mid": MID, "online": 1}), 1),
        "thirdparty.rpc_codec: Decoder.feed, 100 requests per read": (feed_burst, 100),
        "  baseline msgpack.Unpacker, 100 requests per read": (unpack_burst, 100),
    }
    if packed_params != request:
        raise RuntimeError("the msgpack baseline does not pack the same bytes as encode_request")
    try:
        from comet.ws_frames import text_frame  # the comet's own WebSocket framing, where it exists
    except ImportError:
        return found
    found["comet.ws_frames: text frame of a message"] = (lambda: text_frame(MESSAGE), 1)
    return found


def run(args: argparse.Namespace) -> Report:
    report = Report(NAME, {k: v for k, v in vars(args).items() if k != "func"})
    results = {name: ops_per_second(work, args.seconds, per_call) for name, (work, per_call) in cases().items()}
    for name, rate in results.items():
        report.info(name, rate, "ops/s")
    pairs = [("thirdparty.rpc_codec: encode_request PushPrivate", "  baseline msgpack.packb, same request"),
             ("thirdparty.rpc_codec: Decoder.feed, 100 requests per read",
              "  baseline msgpack.Unpacker, 100 requests per read")]
    for ours, bare in pairs:
        report.info(f"  ratio {ours.split(': ')[1]} / msgpack", results[ours] / results[bare], "x")
    report.data["ops_per_second"] = results
    plot_bars(report, "ops", "Codec micro-benchmarks (one core)", "operations per second (log)",
              {name.strip(): rate for name, rate in results.items()})
    return report
