"""`lipstream preview`: a live session seen and heard on this machine (`preview.preview`).

The speaker is the clock. Its output callback pulls 20 ms blocks from a buffer that a pump thread
fills with the session's audio, tick by tick (idle ticks bring their silence), so the buffer is the
session's sample clock laid end to end. Each callback notes which session sample starts its block
and when that block reaches the DAC (`outputBufferDacTime`, or now + the stream's latency where the
host API does not say): a video frame is shown once the DAC has reached its first sample, i.e. at
the moment its audio is heard. The pump keeps only a few blocks buffered, so the session's `lead`
and the device latency are the whole delay.

Without a sound output device the video is paced by the session's clock (frame k at start + k/fps)
and the preview says once that the audio is not played. With a display (`DISPLAY`) the frames go to
a tkinter window (PPM bytes into a PhotoImage: no PIL, and OpenCV here is headless); without one the
live page of `lipstream serve` is served on 127.0.0.1 and the session of each page that connects
says the text (or hears the microphone).
"""
