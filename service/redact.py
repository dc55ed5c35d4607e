"""Secrets in URLs: the password of any URL masked wherever it is shown, logged or stored."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_USERINFO = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s\"',]*):(?P<pw>[^@/\s\"',]+)@"
)


def mask_url(url: str) -> str:
    """url with its password replaced by ***: postgresql://user:***@host/db."""
    if not isinstance(url, str):
        return url
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return mask_text(url)
    if not password:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))


def mask_text(text: str) -> str:
    """text with the password of every URL in it masked (for messages that quote URLs)."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
