"""Live streams out: one live session, always on air, pushed to an RTMP(S) or WHIP ingest.

    rtmp.py       FLV (H.264 from lipstream's libx264 + AAC) over RTMP, paced by the session's clock
    flv_link.py   the pusher's end of one connection: its process, fed tick by tick, killed when it stalls
    flv_out.py    that process: FLV to the ingest (PyAV holds the GIL while it connects: never in ours)
    whip.py       a WHIP client (RFC 9725): aiortc, serve's tracks and pump
    retry.py      URL checks, backoff, the refusals that cannot succeed
    broadcast.py  the session, its pump, its pusher, registered as a session of serve's Server
    inputs.py     what the session says: stdin as it arrives, a text, an audio file
    command.py    `lipstream stream` and `lipstream serve --push`
"""
