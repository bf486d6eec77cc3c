"""A real HTTP server on loopback that plays a webhook subscriber.

It answers the subscription challenge (`GET ?hub.challenge=…`: status `get_code`, the token
echoed unless `echo` is False, or no answer for `stall` seconds with `stall_get`) and records
every POST; POSTs are answered from a script of status codes (the last one sticks), where 0
means: hold the request for `stall` seconds without answering. With `tls`, it speaks HTTPS.
"""

from __future__ import annotations

import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(
        self,
        *codes: int,
        stall: float = 3.0,
        echo: bool = True,
        stall_get: bool = False,
        host: str = "127.0.0.1",
        path: str = "/hook",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.codes = list(codes) or [204]
        self.stall = stall
        self.echo = echo
        self.stall_get = stall_get
        self.get_code = 200
        self.path = path
        self.bodies: list[tuple[dict[str, str], bytes]] = []
        self.challenges: list[dict[str, str]] = []  # the query of each verification request
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                with receiver.lock:
                    receiver.challenges.append({**query, "_host": self.headers.get("Host", "")})
                if receiver.stall_get:
                    time.sleep(receiver.stall)
                    self.close_connection = True
                    return
                answer = query.get("hub.challenge", "") if receiver.echo else "no thanks"
                self._answer(receiver.get_code, answer.encode())

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.bodies.append((dict(self.headers), body))
                    code = receiver.codes.pop(0) if len(receiver.codes) > 1 else receiver.codes[0]
                if code == 0:
                    time.sleep(receiver.stall)
                    self.close_connection = True
                    return
                self._answer(code, b"")

            def _answer(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                if code in (301, 302, 307, 308):
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.server.server_address[0]}:{self.port}{self.path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
