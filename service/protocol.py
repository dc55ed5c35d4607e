"""The HTTP protocol that notes when each request's bytes were parsed.

uvicorn creates the task serving a request as soon as its headers are parsed; the time from
the request's first bytes until that task runs the app is the request waiting for the event loop (the anatomy's `queue`
stage), which only the protocol can see.
"""

from __future__ import annotations

import time

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.anatomy import RECEIVED_KEY


class StampingProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, stamping each request's scope with its parse time."""

    def on_message_begin(self) -> None:
        super().on_message_begin()  # makes the request's scope
        self.scope[RECEIVED_KEY] = time.perf_counter()  # type: ignore[literal-required]
