"""Security headers on every response (pure ASGI middleware, so errors and static files get them too).

Pages: a Content-Security-Policy that loads scripts, styles, fonts and fetches from this site only (no inline script
or style: the pages' scripts are files under /static), images from this site or `data:` (Swagger UI's icons), and
allows no framing, no plugins, no <base> and forms posting only here; `X-Frame-Options: DENY` for browsers without
`frame-ancestors`, `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin` (no URL leaves for another
site). An SVG (the plots) opened on its own gets a policy that runs no script and keeps its inline <style>.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SVG_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"
COMMON_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)


def _policy(headers: list[tuple[bytes, bytes]]) -> bytes:
    content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
    return (SVG_POLICY if content_type.startswith(b"image/svg+xml") else PAGE_POLICY).encode()


class SecurityHeaders:
    """Adds COMMON_HEADERS and the Content-Security-Policy to every HTTP response that does not set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                extra = [*COMMON_HEADERS, (b"content-security-policy", _policy(headers))]
                headers += [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
