"""Deferred imports: papermill loads without building jsonschema's IRI parsers, which still
answer as the real ones once asked."""

from __future__ import annotations

import json
import subprocess
import sys

CHECK = """
import json, sys
{defer}
import papermill
built = "rfc3987_syntax.syntax_helpers" in sys.modules
from jsonschema import FormatChecker
checks = [FormatChecker().conforms(v, f) for v, f in
          [("http://x/\\u00fc", "iri"), ("::no", "iri"), ("a b", "iri-reference"), ("/p", "iri-reference")]]
print(json.dumps({{"built_at_import": built, "checks": checks}}))
"""


def _fresh(defer: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", CHECK.format(defer=defer)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    found: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return found


def test_papermill_imports_without_the_iri_parsers_that_still_check_as_before() -> None:
    deferred = _fresh("from workbench._deferred import defer_iri_checker; defer_iri_checker()")
    eager = _fresh("")
    assert deferred["built_at_import"] is False and eager["built_at_import"] is True
    assert deferred["checks"] == eager["checks"] == [True, False, False, True]
