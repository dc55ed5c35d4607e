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
import psutil

from workbench._errors import InputError
from workbench.paths import runs_dir
from workbench.run import RunResult

MANIFEST = "manifest.json"
SUMMARY = "summary.json"
CLIENT = "series.parquet"
SERVER = "server.parquet"
HDR_LATENCY = "latency.hdr"
HDR_SERVICE = "service_time.hdr"
ANATOMY = "anatomy.parquet"
_TMP_PREFIX = ".tmp-"
_RUNNING_PREFIX = ".running-"  # marker of a run in progress: <root>/.running-<run_id>.json


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

    def begin(self, run_id: str, manifest: dict[str, Any]) -> None:
        """Mark a run as in progress (save() clears it); a marker whose process died reads crashed."""
        self.root.mkdir(parents=True, exist_ok=True)
        me = psutil.Process()
        marker = {**manifest, "run_id": run_id, "pid": me.pid, "pid_started": me.create_time()}
        tmp = self.root / f"{_TMP_PREFIX}{_RUNNING_PREFIX}{run_id}.json"
        tmp.write_text(json.dumps(marker, default=str))
        tmp.replace(self._marker(run_id))

    def _marker(self, run_id: str) -> Path:
        return self.root / f"{_RUNNING_PREFIX}{run_id}.json"

    def unfinished(self) -> pd.DataFrame:
        """Runs begun but never saved: status running (its process lives) or crashed (it died)."""
        rows = []
        if self.root.is_dir():
            for path in sorted(self.root.glob(f"{_RUNNING_PREFIX}*.json")):
                try:
                    marker = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                if (self.path(marker["run_id"]) / MANIFEST).is_file():
                    continue  # saved after all (the marker outlived a crash between two renames)
                alive = _alive(int(marker.get("pid", -1)), float(marker.get("pid_started", 0)))
                rows.append(
                    {
                        "run_id": marker["run_id"],
                        "name": marker.get("name", ""),
                        "status": "running" if alive else "crashed",
                        "started_at": marker.get("started_at"),
                        **(marker.get("labels") or {}),
                    }
                )
        return pd.DataFrame(rows)

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
        result.anatomy_table.to_parquet(tmp / ANATOMY)
        for name, source in (files or {}).items():
            if source.exists():
                shutil.copyfile(source, tmp / name)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        self._marker(result.run_id).unlink(missing_ok=True)
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
            anatomy_table=(
                pd.read_parquet(folder / ANATOMY) if (folder / ANATOMY).exists() else pd.DataFrame()
            ),
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

    def summary(self, run_id: str) -> dict[str, Any] | None:
        """One stored run's summary row (None when unreadable), without loading its series."""
        try:
            row: dict[str, Any] = json.loads((self.path(run_id) / SUMMARY).read_text())
        except (OSError, ValueError):
            return None
        return row

    def runs(self, *, unfinished: bool = False) -> pd.DataFrame:
        """One row per stored run: its summary, with its settings as columns (+ unfinished runs)."""
        rows = [row for row in map(self.summary, self.ids()) if row is not None]
        frame = pd.DataFrame(rows)
        if unfinished:
            frame = pd.concat([frame, self.unfinished()], ignore_index=True)
        return frame


def _alive(pid: int, started: float) -> bool:
    """True when pid is the same process that wrote the marker (pids are reused)."""
    try:
        return abs(psutil.Process(pid).create_time() - started) < 1.0
    except (psutil.Error, ValueError):
        return False


def runs() -> pd.DataFrame:
    """All runs in data/runs as one DataFrame."""
    return Store().runs()


def load(run_id: str) -> RunResult:
    """One run from data/runs."""
    return Store().load(run_id)
