"""Imports deferred to first use in the workbench's own processes (the CLI, a cluster's agents)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

IRI_CHECKER = "rfc3987_syntax"  # jsonschema's non-GPL checker of the "iri" formats


def defer_iri_checker() -> None:
    """Let jsonschema (nbformat's, hence papermill's) import rfc3987_syntax without building its
    Earley parsers, ~1 s of CPU at import, until an "iri" format is checked: a notebook's
    schema has none. Once used, the checker is the real one."""
    if IRI_CHECKER in sys.modules:
        return
    spec = importlib.util.find_spec(IRI_CHECKER)
    if spec is None or spec.submodule_search_locations is None:
        return

    def real() -> types.ModuleType:
        return importlib.import_module(f"{IRI_CHECKER}.syntax_helpers")

    def is_valid_syntax(term: str, value: str) -> Any:
        """rfc3987_syntax.is_valid_syntax, its parsers built on the first call."""
        return real().is_valid_syntax(term, value)

    stub = types.ModuleType(IRI_CHECKER, "rfc3987_syntax, loaded on first use")
    stub.__path__ = list(spec.submodule_search_locations)  # its submodules import as usual
    stub.is_valid_syntax = is_valid_syntax  # type: ignore[attr-defined]
    stub.__getattr__ = lambda name: getattr(real(), name)  # type: ignore[method-assign]
    sys.modules[IRI_CHECKER] = stub
