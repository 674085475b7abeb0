"""One RTMP connection in a process of its own (`python -m stream.push.flv_out URL`): encoded
packets in on stdin, FLV out to the ingest, progress back on stdout, each message a pickle after
its length (4 bytes, little-endian).

Why a process: PyAV holds the GIL while it opens an output (`avio_open`: the TCP connection and the
RTMP handshake and publish) and while it writes the header and the trailer, and its outputs have no
I/O timeout. An ingest that accepts the connection and then never answers froze every thread of the
pushing process, forever (measured: a server that accepts and never reads stopped the pump, the
HTTP API and any watchdog). Here only this process waits; the pusher kills it after a time limit.

    in:  ("open", video settings, audio settings)     the streams' codec settings (attribute → value)
         ("tick", index, [(stream, bytes, pts, dts, key)])   packets with their timestamps in 1/fps or 1/48000
         ("end",)                                     the trailer, then exit
    out: ("ready",) once imported; ("open",) on air; ("sent", index); ("closed", ticks);
         ("error", refused, reason) (refused: trying again cannot help)

It imports PyAV alone (not torch), so it starts in a fraction of a second.
"""
from __future__ import annotations

import fractions
import pickle
import struct
import sys


def _reason(error: Exception) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return text.split(":")[0].strip() if text else type(error).__name__


def _configure(ctx, settings: dict) -> None:
    for name, value in settings.items():
        setattr(ctx, name, value)


def main(url: str) -> int:
    import av

    inp, out = sys.stdin.buffer, sys.stdout.buffer

    def say(*message) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        out.write(struct.pack("<I", len(data)) + data)
        out.flush()

    def hear() -> tuple:
        head = inp.read(4)
        data = inp.read(struct.unpack("<I", head)[0]) if len(head) == 4 else b""
        if not data:
            raise EOFError("the pusher went away")
        return pickle.loads(data)

    say("ready")
    container, ticks = None, 0
    try:
        _, video_settings, audio_settings = hear()
        container = av.open(url, "w", format="flv")
        streams = [container.add_stream("libx264", rate=video_settings["framerate"]), container.add_stream("aac", rate=48000)]
        # Configured as the real encoders: the FLV sequence headers describe the packets they carry.
        _configure(streams[0].codec_context, video_settings)
        _configure(streams[1].codec_context, audio_settings)
        container.start_encoding()  # connects, publishes and sends the FLV header
        say("open")
        bases = (fractions.Fraction(1, int(video_settings["framerate"])), fractions.Fraction(1, 48000))
        while (message := hear())[0] == "tick":
            _, index, packets = message
            for stream, data, pts, dts, key in packets:
                p = av.Packet(data)
                p.pts, p.dts, p.time_base, p.stream = pts, dts, bases[stream], streams[stream]
                p.is_keyframe = key
                container.mux(p)
            ticks += 1
            say("sent", index)
        container.close()
        say("closed", ticks)
        return 0
    except (av.error.ProtocolNotFoundError, av.error.PermissionError) as e:
        say("error", True, _reason(e))
    except (av.FFmpegError, OSError, EOFError) as e:
        say("error", False, _reason(e))
    if container is not None:
        try:
            container.close()
        except (av.FFmpegError, OSError):
            pass
    return 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1]))
    except (BrokenPipeError, KeyboardInterrupt):  # the pusher went away or ended it
        sys.exit(1)
