"""Live streams out: one live session, always on air, pushed to an RTMP(S) or WHIP ingest.

    rtmp.py       FLV (H.264 from lipstream's libx264 + AAC) over RTMP, paced by the session's clock
    whip.py       a WHIP client (RFC 9725): aiortc, serve's tracks and pump
    retry.py      URL checks, backoff, the refusals that cannot succeed
    broadcast.py  the session, its pump, its pusher, registered as a session of serve's Server
    inputs.py     what the session says: stdin as it arrives, a text, an audio file
    command.py    `lipstream stream` and `lipstream serve --push`
"""
