"""`loupe ui --auth oidc`: viewers sign in with an identity provider through Streamlit's
st.login. A stub OpenID Connect provider on 127.0.0.1 (discovery, authorize, token with
an RS256-signed id_token, JWKS) stands in for the team's; Chromium signs in through it,
and the gate then lets that browser, and no other, reach the indexed files."""

from __future__ import annotations

import secrets
import shutil
import threading
import time
import urllib.parse

import pytest
from helpers.media import solid
from helpers.served import free_port, serve_ui

from loupe.search.cli import main as loupe
from loupe.search.store import Store

pytest.importorskip("authlib", reason="the oidc extra (Authlib) is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed"),
    pytest.mark.timeout(300),
]
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

CLIENT_ID, CLIENT_SECRET = "loupe-ui", "stub-client-secret"
USER = {"sub": "ada", "email": "ada@example.org", "name": "Ada"}


class StubProvider:
    """A minimal OpenID Connect provider that signs in whoever asks, as USER."""

    def __init__(self):
        from authlib.jose import JsonWebKey

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = JsonWebKey.generate_key("RSA", 2048, is_private=True,
                                           options={"kid": "stub-1"})
        self.codes: dict[str, dict] = {}
        self.tokens_issued = 0

    def app(self):
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse, RedirectResponse
        from starlette.routing import Route

        async def discovery(request):
            return JSONResponse({
                "issuer": self.url, "authorization_endpoint": self.url + "/authorize",
                "token_endpoint": self.url + "/token", "jwks_uri": self.url + "/jwks",
                "userinfo_endpoint": self.url + "/userinfo",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                          "client_secret_post"]})

        async def authorize(request):
            q = request.query_params
            assert q["client_id"] == CLIENT_ID and q["response_type"] == "code"
            code = secrets.token_urlsafe(16)
            self.codes[code] = {"nonce": q.get("nonce"), "redirect_uri": q["redirect_uri"]}
            sep = "&" if "?" in q["redirect_uri"] else "?"
            back = q["redirect_uri"] + sep + urllib.parse.urlencode(
                {"code": code, "state": q["state"]})
            return RedirectResponse(back, status_code=302)

        async def token(request):
            from authlib.jose import jwt

            form = await request.form()
            grant = self.codes.pop(form.get("code"), None)
            if grant is None:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            now = int(time.time())
            claims = {"iss": self.url, "aud": CLIENT_ID, "iat": now, "exp": now + 300,
                      **USER}
            if grant["nonce"]:
                claims["nonce"] = grant["nonce"]
            id_token = jwt.encode({"alg": "RS256", "kid": "stub-1"}, claims, self.key)
            self.tokens_issued += 1
            return JSONResponse({"access_token": secrets.token_urlsafe(16),
                                 "token_type": "Bearer", "expires_in": 300,
                                 "id_token": id_token.decode()})

        async def jwks(request):
            return JSONResponse({"keys": [self.key.as_dict(is_private=False)]})

        async def userinfo(request):
            return JSONResponse(USER)

        return Starlette(routes=[Route("/.well-known/openid-configuration", discovery),
                                 Route("/authorize", authorize),
                                 Route("/token", token, methods=["POST"]),
                                 Route("/jwks", jwks), Route("/userinfo", userinfo)])


@pytest.fixture(scope="module")
def provider():
    import uvicorn

    stub = StubProvider()
    server = uvicorn.Server(uvicorn.Config(stub.app(), host="127.0.0.1", port=stub.port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield stub
    server.should_exit = True
    thread.join(10)


def test_signing_in_with_the_identity_provider_opens_the_ui_and_its_files(
        provider, tmp_path, tiny_clip_dir):
    root = tmp_path / "archive"
    solid(root / "red.png", (250, 0, 0))
    db = str(tmp_path / "db")
    assert loupe(["index", str(root), "--db", db, "--model", tiny_clip_dir, "--workers", "0",
                  "--quiet"]) == 0
    item = Store(db).items(create=False).to_arrow().to_pylist()[0]["id"]
    port = free_port()
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text(f"""[auth]
redirect_uri = "http://127.0.0.1:{port}/oauth2callback"
cookie_secret = "{secrets.token_hex(32)}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
server_metadata_url = "{provider.url}/.well-known/openid-configuration"
""")
    env = {"AUTHLIB_INSECURE_TRANSPORT": "1"}  # the stub speaks plain HTTP on loopback
    import os

    with serve_ui(db, tmp_path, token=None, port=port, env=dict(os.environ, **env),
                  auth="oidc", oidc_secrets=str(secrets_file)) as s, \
            playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            stranger = browser.new_context()
            assert stranger.request.get(f"{s.url}/loupe/file/{item}").status == 401
            ctx = browser.new_context()
            pg = ctx.new_page()
            pg.set_default_timeout(60_000)
            pg.goto(s.url + "/")
            assert pg.get_by_label("Search", exact=True).count() == 0
            pg.get_by_role("button", name="Sign in").click()
            pg.get_by_label("Search", exact=True).wait_for()  # back, signed in
            pg.get_by_text("Signed in as ada@example.org").wait_for()
            assert provider.tokens_issued == 1
            got = ctx.request.get(f"{s.url}/loupe/file/{item}")
            assert got.status == 200 and got.body() == (root / "red.png").read_bytes()
            assert stranger.request.get(f"{s.url}/loupe/file/{item}").status == 401
        finally:
            browser.close()
