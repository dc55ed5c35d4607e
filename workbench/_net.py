"""Loopback addresses and free ports."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from workbench._errors import InputError
from workbench._secrets import mask_text, mask_url

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on host right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def check_port(name: str, port: int, host: str = "127.0.0.1") -> int:
    """Port as given, or InputError when out of range or busy."""
    if not 1 <= port <= 65535:
        raise InputError(name, f"must be a port number 1..65535, got {port}")
    if port_in_use(port, host):
        raise InputError(name, f"port {port} on {host} is already in use; pick another or omit it")
    return port


def wait_for_port(port: int, *, host: str = "127.0.0.1", timeout: float = 10.0) -> bool:
    """Wait until something accepts connections on host:port; False on timeout."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_in_use(port, host):
            return True
        time.sleep(0.02)
    return False


def check_url(name: str, url: str, *, schemes: tuple[str, ...]) -> str:
    """URL as given, or InputError when it does not parse or has another scheme."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        raise InputError(name, f"not a valid URL ({exc}): {mask_text(url)!r}") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise InputError(
            name, f"must be a URL like {schemes[0]}://host:port/..., got {mask_url(url)!r}"
        )
    return url
