"""The gunicorn worker serving the app on uvicorn with the stamping protocol.

A module of its own: uvicorn alone (one worker, no gunicorn) imports the protocol, not gunicorn.
"""

from __future__ import annotations

from uvicorn_worker import UvicornWorker

from service.protocol import StampingProtocol


class StampingWorker(UvicornWorker):
    """gunicorn's uvicorn worker on uvloop with the stamping protocol."""

    CONFIG_KWARGS = {"loop": "uvloop", "http": StampingProtocol}
