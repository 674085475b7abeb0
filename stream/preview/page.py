"""The preview without a display: `lipstream serve`'s page on 127.0.0.1."""
from __future__ import annotations

from ..errors import LipstreamError
from .player import PreviewResult


def serve_page(config, *, text, mic, port: int, on_address=None, **settings) -> PreviewResult:
    """No display: `lipstream serve`'s page on 127.0.0.1; each page's session says the text (or hears
    the microphone). Ends once a page has heard the whole text (or the microphone has stopped)."""
    import asyncio
    import json

    from aiohttp import web

    from ..config import as_config
    from ..serve.app import Server
    from ..serve.ice import _gather, aioice, offer_loopback
    ice = aioice.ice
    from ..sources.mic import feed_session, stop_on_interrupt

    cfg = as_config(config, **settings)
    result = PreviewResult(where=f"page http://127.0.0.1:{port}/")
    feeds = []

    class PreviewServer(Server):
        async def offer(self, request):
            response = await super().offer(request)
            viewer = self.viewers[json.loads(response.body)["session"]]
            emit = viewer.emit

            def on_event(name, data, emit=emit):
                emit(name, data)
                if name == "segment_end" and data.get("segment") == said.get(viewer.id):
                    result.speech_seconds += data.get("playback_position", 0.0)
                    loop.call_soon_threadsafe(done.set)

            viewer.media._events = on_event  # the media pump's events, before it starts
            viewer.emit = emit
            if text is not None:
                said[viewer.id] = viewer.session.say(text)
            elif mic is not None and not feeds:
                feeds.append(feed_session(viewer.session, mic))
            return response

        def _on_frame(self, viewer, frame, late):
            super()._on_frame(viewer, frame, late)
            result.frames += 1
            result.speaking_frames += frame.speaking

    said: dict[str, int] = {}

    async def run():
        nonlocal loop, done
        loop, done = asyncio.get_running_loop(), asyncio.Event()
        if ice.get_host_addresses is _gather:  # not already restricted (tests): a browser here reaches it on loopback
            offer_loopback(only=False)
        server = PreviewServer(cfg)
        runner = web.AppRunner(server.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise LipstreamError(f"cannot serve the preview page on 127.0.0.1:{port} ({e.strerror}); try --port") from None
        address = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/"
        result.where = f"page {address}"
        print(f"lipstream: no display: open {address} to see and hear the preview", flush=True)
        if on_address is not None:
            on_address(address)
        try:
            while not done.is_set():
                if feeds and feeds[0].ended:
                    sid = next(iter(server.viewers), None)
                    said.setdefault(sid, feeds[0].segment)
                    if sid is None:
                        break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # the last packets leave
        finally:
            await runner.cleanup()

    loop = done = None
    with stop_on_interrupt(mic):
        asyncio.run(run())
    for f in feeds:
        f.mic.close()
    return result
