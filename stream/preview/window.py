"""Where the preview's frames are shown: a Tk window on the main thread, or nowhere (headless)."""
from __future__ import annotations

import time

import numpy as np

from .player import Player


def ppm(rgb: np.ndarray) -> bytes:
    """H×W×3 uint8 RGB as binary PPM (what Tk's PhotoImage reads without PIL)."""
    h, w, _ = rgb.shape
    return b"P6 %d %d 255\n" % (w, h) + np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()


def window(player: Player, title: str, poll_ms: int = 4, on_tick=None) -> None:
    """Frames into a Tk window on the main thread until the player is done or the window is closed."""
    import tkinter as tk

    root = tk.Tk()
    root.title(title)
    label = tk.Label(root)
    label.pack()
    state = {"image": None}

    def tick():
        if on_tick is not None:
            on_tick()
        frame = player.due()
        if frame is not None:
            state["image"] = tk.PhotoImage(data=ppm(frame.rgb()), format="PPM")
            label.configure(image=state["image"])
            player.result.window_size = (root.winfo_width(), root.winfo_height())
        if player.done:
            root.quit()
            return
        root.after(poll_ms, tick)

    errors: list[BaseException] = []

    def report(kind, error, tb):  # Tk would print a callback's exception and go on; Ctrl-C must end it
        errors.append(error)
        root.quit()

    root.report_callback_exception = report
    root.protocol("WM_DELETE_WINDOW", player.stop)
    root.after(poll_ms, tick)
    try:
        root.mainloop()
    finally:
        root.destroy()
    if errors:
        raise errors[0]


def headless(player: Player, on_tick=None) -> None:
    """No window: the frames are taken at their time and dropped (tests, benchmarks)."""
    while True:
        if on_tick is not None:
            on_tick()
        player.due()
        if player.done:
            return
        time.sleep(0.004)
