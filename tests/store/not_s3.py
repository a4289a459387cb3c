"""HTTP servers on loopback that answer, but not as S3 does: what a wrong
`endpoint` (a web server, another API, a proxy's error page) looks like to a client."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# kind -> (status, content type, body, extra headers)
ANSWERS: dict[str, tuple[int, str, bytes, dict[str, str]]] = {
    "404-bare": (404, "text/plain", b"", {}),
    "404-html": (404, "text/html", b"<html><body><h1>Not Found</h1></body></html>", {}),
    "200-xml": (
        200,
        "application/xml",
        b'<?xml version="1.0"?><feed><entry>hello</entry></feed>',
        {},
    ),
    "200-xhtml-etag": (
        200,
        "text/html",
        b"<html><body><p>It works!</p></body></html>",
        {"ETag": '"5e1f-abc"'},
    ),
    "200-json": (200, "application/json", b'{"status": "ok", "items": []}', {}),
    "200-empty": (200, "text/plain", b"", {}),
}


@contextmanager
def not_s3_server(kind: str) -> Iterator[str]:
    """Every GET, HEAD and PUT is answered with ANSWERS[kind]; yields the endpoint URL."""
    status, ctype, body, headers = ANSWERS[kind]

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _answer

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
