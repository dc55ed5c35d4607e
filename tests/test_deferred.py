"""Deferred imports: papermill loads without building jsonschema's IRI parsers, which still
answer as the real ones once asked."""

from __future__ import annotations

import json
import subprocess
import sys

CASES = [
    ("http://x/\u00fc", "iri"),
    ("::no", "iri"),
    ("a b", "iri-reference"),
    ("/p", "iri-reference"),
]
CHECK = """
import json, sys
from workbench._deferred import defer_iri_checker
defer_iri_checker()
import papermill
built = "rfc3987_syntax.syntax_helpers" in sys.modules
from jsonschema import FormatChecker
checks = [FormatChecker().conforms(v, f) for v, f in json.loads(sys.argv[1])]
print(json.dumps({"built_at_import": built, "checks": checks}))
"""


def test_papermill_imports_without_the_iri_parsers_that_still_check_as_before() -> None:
    from jsonschema import FormatChecker

    done = subprocess.run([sys.executable, "-c", CHECK, json.dumps(CASES)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    deferred = json.loads(done.stdout.splitlines()[-1])
    assert deferred["built_at_import"] is False
    real = [FormatChecker().conforms(value, form) for value, form in CASES]  # parsers built here
    assert deferred["checks"] == real == [True, False, False, True]
