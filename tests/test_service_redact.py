"""Masking: the password of any URL replaced by *** wherever it is shown, logged or stored."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from service.redact import mask_text, mask_url
from workbench.paths import project_dir


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://user:pw@host:5432/db", "postgresql://user:***@host:5432/db"),
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("http://127.0.0.1:8000/users/1", "http://127.0.0.1:8000/users/1"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("https://a:b%40c@example.com/x?y=1", "https://a:***@example.com/x?y=1"),
    ],
)
def test_mask_url_hides_the_password_only(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_text_masks_urls_inside_messages() -> None:
    text = 'connect to "postgresql://u:pw@h/db" failed; see http://127.0.0.1:80,"a@b"'
    assert (
        mask_text(text)
        == 'connect to "postgresql://u:***@h/db" failed; see http://127.0.0.1:80,"a@b"'
    )


def test_the_service_names_a_bad_url_without_its_password() -> None:
    env = {
        **os.environ,
        "DATABASE_URL": "mysql://bench:S3CRET@127.0.0.1/x",
        "REDIS_URL": "redis://127.0.0.1:9/0",
        "PORT": "9",
    }
    done = subprocess.run(
        [sys.executable, "-m", "service"], env=env, cwd=project_dir(),
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "S3CRET" not in done.stderr and "bench:***@" in done.stderr
