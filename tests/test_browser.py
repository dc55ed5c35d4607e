"""The kept headless Chromium: a page it cannot open is a clear error, and it leaves no process."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from workbench._errors import StackError
from workbench.browser import Browser


def test_a_missing_page_is_a_clear_error_and_the_browser_goes_on_then_stops(
    tmp_path: Path,
) -> None:
    page = tmp_path / "page.html"
    page.write_text("<html><body><div id='x'>drawn</div><script>1</script></body></html>")
    with Browser() as browser:
        pid = browser.proc.pid if browser.proc else 0
        with pytest.raises(StackError, match="could not open .*missing.html"):
            browser.open(tmp_path / "missing.html")
        # the same browser still serves the next page
        assert "drawn" in browser.dom(page)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
