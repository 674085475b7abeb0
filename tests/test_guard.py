"""Other web pages cannot drive a local server: serve's Host, Origin and Content-Type rules, on the
real app over loopback HTTP (a real browser meets them in test_page.py)."""
import asyncio
import contextlib

import aiohttp
import pytest
from aiohttp import web

from stream.cli.main import main
from stream.config import make_config
from stream.errors import LipstreamError
from stream.serve.app import Server
from stream.serve.client import PeerClient
from stream.serve.guard import Guard, is_loopback_host
from stream.serve.ice import offer_loopback

BOX = (67, 170, 177, 270)
ALLOWED = "https://app.example.com"
offer_loopback(only=True)


@contextlib.asynccontextmanager
async def serving(host="127.0.0.1", allow_origins=()):
    server = Server(make_config(box=BOX), host=host, allow_origins=allow_origins)
    runner = web.AppRunner(server.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as http:
            yield server, f"http://127.0.0.1:{port}", port, http
    finally:
        await runner.cleanup()


async def call(http, method, url, status, **kw):
    async with http.request(method, url, **kw) as r:
        body = await r.json() if r.content_type == "application/json" else None
        assert r.status == status, (method, url, r.status, body)
        return body, r.headers


def test_json_endpoints_take_only_json_and_the_audio_endpoint_only_pcm_or_wav():
    async def go():
        async with serving() as (server, base, port, http):
            viewer = PeerClient(base)
            await viewer.connect()
            session = server.viewers[viewer.session].session
            said = []
            speak = session.say
            session.say = lambda text, *a: said.append(text) or speak(text, *a)
            sid = viewer.session
            form = b'{"text": "Spoken by a form on another page."}'
            for path in ("/offer", f"/sessions/{sid}/say", f"/sessions/{sid}/interrupt"):
                for given in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
                    body, _ = await call(http, "POST", base + path, 415, data=form, headers={"Content-Type": given})
                    assert body == {"error": f"Content-Type must be application/json, not {given}"}
                body, _ = await call(http, "POST", base + path, 415, data=form, skip_auto_headers=["Content-Type"])
                assert body == {"error": "Content-Type must be application/json, not none"}
            body, _ = await call(http, "POST", f"{base}/sessions/{sid}/audio?rate=16000", 415, data=b"\0\0" * 800,
                                 headers={"Content-Type": "text/plain"})
            assert body == {"error": "Content-Type must be application/octet-stream or audio/wav, not text/plain"}
            assert said == [] and len(server.viewers) == 1  # nothing refused was acted on
            await call(http, "POST", f"{base}/sessions/{sid}/say", 202, data=form,
                       headers={"Content-Type": "application/json; charset=utf-8"})
            for given in ("application/octet-stream", "audio/wav"):
                await call(http, "POST", f"{base}/sessions/{sid}/audio?rate=16000", 202, data=b"\1\0" * 800,
                           headers={"Content-Type": given})
            await call(http, "POST", f"{base}/sessions/{sid}/interrupt", 200, json={})
            await viewer.close()
            return said

    assert asyncio.run(go()) == ["Spoken by a form on another page."]


def test_another_origin_is_refused_unless_allowed_and_an_allowed_one_gets_cors_headers():
    async def go():
        async with serving(allow_origins=[ALLOWED, "http://localhost:3000/"]) as (server, base, port, http):
            evil = {"Origin": "https://evil.example", "Content-Type": "application/json"}
            for method, path in (("POST", "/offer"), ("POST", "/sessions/x/say"), ("GET", "/sessions/x/events"),
                                 ("DELETE", "/sessions/x"), ("GET", "/metrics"), ("OPTIONS", "/offer")):
                body, headers = await call(http, method, base + path, 403, data=b"{}",
                                           headers={**evil, "Access-Control-Request-Method": "POST"})
                assert body == {"error": "origin https://evil.example may not use this server "
                                         "(--allow-origin https://evil.example allows it)"}
                assert "Access-Control-Allow-Origin" not in headers
            body, _ = await call(http, "POST", base + "/offer", 403, json={}, headers={"Origin": "null"})
            assert body["error"].startswith("origin null may not use this server")
            # The server's own page, and clients that are not browsers (no Origin), are not concerned.
            for origin in (base, f"http://localhost:{port}"):
                body, _ = await call(http, "POST", base + "/offer", 400, json={},
                                     headers={"Origin": origin, "Host": origin.split("//")[1]})
                assert body == {"error": 'expected {"sdp": "...", "type": "offer"}'}
            # An allowed origin: a preflight answered, CORS headers on its answers, errors included.
            _, headers = await call(http, "OPTIONS", base + "/sessions/x/say", 204, headers={
                "Origin": ALLOWED, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, authorization"})
            assert headers["Access-Control-Allow-Origin"] == ALLOWED and headers["Vary"] == "Origin"
            assert headers["Access-Control-Allow-Methods"] == "GET, POST, DELETE, OPTIONS"
            assert headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type"
            body, headers = await call(http, "POST", base + "/sessions/x/say", 404, json={}, headers={"Origin": ALLOWED})
            assert body == {"error": "no such session"} and headers["Access-Control-Allow-Origin"] == ALLOWED
            body, headers = await call(http, "GET", base + "/healthz", 200, headers={"Origin": "http://localhost:3000"})
            assert body["status"] == "ok" and headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
            body, headers = await call(http, "POST", base + "/sessions/x/say", 415, data=b"{}",
                                       headers={"Origin": ALLOWED, "Content-Type": "text/plain"})
            assert headers["Access-Control-Allow-Origin"] == ALLOWED  # its page can read why

    asyncio.run(go())


def test_on_a_loopback_address_only_loopback_host_names_are_answered():
    async def go():
        async with serving() as (server, base, port, http):
            for host in (f"evil.example:{port}", "evil.example", f"192.168.1.10:{port}", f"[2001:db8::1]:{port}"):
                body, _ = await call(http, "GET", base + "/healthz", 403, headers={"Host": host})
                assert body == {"error": f"Host {host} is refused: a server on a loopback address answers only "
                                         "to a loopback name or address"}
            # A DNS-rebinding page is its own origin: the Host rule is what refuses it.
            await call(http, "POST", base + "/offer", 403, json={},
                       headers={"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"})
            for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}",
                         f"127.0.0.2:{port}", f"app.localhost:{port}", "localhost"):
                await call(http, "GET", base + "/healthz", 200, headers={"Host": host})
        async with serving(host="0.0.0.0") as (server, base, port, http):  # --host a public address: names unknown
            await call(http, "GET", base + "/healthz", 200, headers={"Host": f"avatar.example:{port}"})

    asyncio.run(go())


def test_loopback_names_and_allowed_origins_are_checked():
    assert all(map(is_loopback_host, ["localhost", "a.localhost", "127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost."]))
    assert not any(map(is_loopback_host, ["0.0.0.0", "10.0.0.1", "example.com", "localhost.example.com", "::"]))
    for bad in ("app.example.com", "*", "https://app.example.com/path", "ftp://app.example.com"):
        with pytest.raises(LipstreamError, match=r"^--allow-origin wants an origin such as https://app\.example\.com, "
                                                 rf"not '{bad.replace('.', '[.]').replace('*', '[*]')}'$"):
            Guard(allow_origins=[bad])


def test_a_bad_allow_origin_is_one_error_line_and_exit_2(capsys):
    assert main(["serve", "--allow-origin", "*", "--port", "0"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "lipstream: error: --allow-origin wants an origin such as https://app.example.com, not '*'"]
