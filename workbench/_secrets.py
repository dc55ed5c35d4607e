"""Secrets: passwords of URLs masked wherever they are shown or stored, and the stack's own password."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from service.redact import MASK, mask_text, mask_url
from workbench import _fs

__all__ = ["MASK", "hide", "mask_text", "mask_url", "reveal", "stack_password", "with_password"]

PASSWORD_FILE = "password"
# Real URLs of masked ones, for processes we start (a notebook's kernel): {masked: real}.
REVEAL_ENV = "WORKBENCH_SECRET_URLS"


def password_of(url: str) -> str | None:
    """The password of a URL (decoded), or None."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def with_password(url: str, password: str) -> str:
    """url with user:password (the password percent-encoded)."""
    parts = urlsplit(url)
    user, _, host = parts.netloc.rpartition("@")
    user = user.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


def stack_password(root: Path) -> tuple[str, bool]:
    """The password of the servers kept in root (a 0600 file, made on first use); True when new."""
    path = Path(root) / PASSWORD_FILE
    if os.path.lexists(path):
        return _fs.read_private(path).strip(), False
    password = secrets.token_urlsafe(24)
    _fs.write_private(path, password + "\n")
    return password, True


def hide(values: Mapping[str, object]) -> tuple[dict[str, object], dict[str, str]]:
    """values with every URL's password masked, and {masked: real} to reveal them again."""
    shown: dict[str, object] = {}
    real: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, str) and password_of(value):
            masked = mask_url(value)
            real[masked] = value
            shown[key] = masked
        else:
            shown[key] = value
    return shown, real


def reveal(url: str | None) -> str | None:
    """The real URL of one masked by hide() in a parent process (REVEAL_ENV), else url itself."""
    if not url or MASK not in url:
        return url
    try:
        known = json.loads(os.environ.get(REVEAL_ENV) or "{}")
    except ValueError:
        return url
    found = known.get(url)
    return found if isinstance(found, str) else url
