"""A real HTTP server on 127.0.0.1 for the download tests: stdlib ``http.server`` in a thread, with ``Range``
support and faults the tests switch on per request (drop the connection mid-body, serve other bytes,
answer with an error status first, ignore ``Range``).
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Faults:
    """Each counter is used up one request at a time; 0 turns the fault off."""

    statuses: list[int] = field(default_factory=list)  # answer these statuses first, in order
    drop_after: int | None = None  # send only this many body bytes, then close the connection...
    drops: int = 0  # ... for this many requests
    body: bytes | None = None  # serve these bytes instead of the file (e.g. an HTML quota page)
    ignore_range: bool = False  # answer 200 with the whole file even when Range is asked for


@dataclass
class Server:
    files: dict[str, bytes]
    faults: Faults = field(default_factory=Faults)
    requests: list[tuple[str, str | None, int]] = field(default_factory=list)  # (path, Range header, status)
    base_url: str = ""
    _httpd: ThreadingHTTPServer | None = None

    def start(self) -> Server:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?", 1)[0].lstrip("/")
                rng = self.headers.get("Range")
                f = server.faults
                if f.statuses:
                    status = f.statuses.pop(0)
                    server.requests.append((path, rng, status))
                    self.send_error(status)
                    return
                data = f.body if f.body is not None else server.files.get(path)
                if data is None:
                    server.requests.append((path, rng, 404))
                    self.send_error(404)
                    return
                start = 0
                if rng and not f.ignore_range and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    if start >= len(data):
                        server.requests.append((path, rng, 416))
                        self.send_error(416)
                        return
                status = 206 if start else 200
                server.requests.append((path, rng, status))
                self.send_response(status)
                self.send_header("Content-Length", str(len(data) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                body = data[start:]
                if f.drops and f.drop_after is not None:
                    f.drops -= 1
                    self.wfile.write(body[: f.drop_after])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def statuses(self) -> list[int]:
        return [s for _, _, s in self.requests]
