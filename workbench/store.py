"""Store: data/runs/<run_id>/ with manifest.json, series.parquet, server.parquet and HDR histograms."""

from __future__ import annotations

import json
import re
import secrets
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from workbench._errors import InputError
from workbench.paths import runs_dir
from workbench.run import RunResult

MANIFEST = "manifest.json"
SUMMARY = "summary.json"
CLIENT = "series.parquet"
SERVER = "server.parquet"
HDR_LATENCY = "latency.hdr"
HDR_SERVICE = "service_time.hdr"
_TMP_PREFIX = ".tmp-"


def new_run_id(name: str = "run") -> str:
    """A sortable, unique run id: UTC time, a slug of name, a random suffix."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "run"
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{slug}-{secrets.token_hex(3)}"


@dataclass
class Store:
    """A folder of runs; each run is written to a temporary folder and renamed into place."""

    root: Path = field(default_factory=runs_dir)

    def path(self, run_id: str) -> Path:
        """The folder of a run."""
        return self.root / run_id

    def save(self, result: RunResult, *, files: dict[str, Path] | None = None) -> Path:
        """Write a run atomically (a reader sees all of it or nothing); extra files are copied in."""
        final = self.path(result.run_id)
        tmp = self.root / f"{_TMP_PREFIX}{result.run_id}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / MANIFEST).write_text(json.dumps(result.manifest, indent=2, default=str))
        (tmp / SUMMARY).write_text(json.dumps(result.summary_row, indent=2, default=str))
        result.client.to_parquet(tmp / CLIENT, index=False)
        result.server.to_parquet(tmp / SERVER, index=False)
        (tmp / HDR_LATENCY).write_bytes(result.hdr_latency)
        (tmp / HDR_SERVICE).write_bytes(result.hdr_service)
        for name, source in (files or {}).items():
            if source.exists():
                shutil.copyfile(source, tmp / name)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        return final

    def load(self, run_id: str) -> RunResult:
        """A stored run by id."""
        folder = self.path(run_id)
        if not (folder / MANIFEST).is_file():
            known = ", ".join(self.ids()[-5:]) or "none"
            raise InputError("run_id", f"no run {run_id!r} in {self.root}; latest: {known}")
        return RunResult(
            run_id=run_id,
            manifest=json.loads((folder / MANIFEST).read_text()),
            summary_row=json.loads((folder / SUMMARY).read_text()),
            client=pd.read_parquet(folder / CLIENT),
            server=pd.read_parquet(folder / SERVER),
            hdr_latency=(folder / HDR_LATENCY).read_bytes(),
            hdr_service=(folder / HDR_SERVICE).read_bytes(),
        )

    def ids(self) -> list[str]:
        """Ids of complete runs, oldest first (temporary folders of runs being written are skipped)."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(_TMP_PREFIX) and (p / MANIFEST).is_file()
        )

    def runs(self) -> pd.DataFrame:
        """One row per stored run: its summary, with its settings as columns."""
        rows: list[dict[str, Any]] = []
        for run_id in self.ids():
            try:
                rows.append(json.loads((self.path(run_id) / SUMMARY).read_text()))
            except (OSError, ValueError):
                continue
        return pd.DataFrame(rows)


def runs() -> pd.DataFrame:
    """All runs in data/runs as one DataFrame."""
    return Store().runs()


def load(run_id: str) -> RunResult:
    """One run from data/runs."""
    return Store().load(run_id)
