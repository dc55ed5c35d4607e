"""Load: what to offer a target, relative to it (profile, requests, generators); no URL yet."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench._errors import InputError, positive_int
from workbench.load._profile import LoadProfile
from workbench.load._scenario import DEFAULT_ID_MAX, Scenario

# The open loops of the capacity studies (search, ladder) cap requests in flight here: above what
# a 2-core service holds under a 50 ms P95 (3,000 req/s x 20 ms = 60), so that the cap, not the
# service, is never what breaks a step.
STUDY_CONNECTIONS = 256


@dataclass(frozen=True)
class Load(LoadProfile):
    """A load declared once: its profile (the fields of LoadProfile) plus which requests, by how
    many generator processes. Bound to a target's URL at run time (LoadPlan.build(url, load)).

    path: the request path under the target, `{id}` drawn per request; ids: how (uniform, zipf,
    seed); id_max: the id range (None: the target's, e.g. the bundled stack's users); seed: None
    draws a fresh one per run (recorded), so runs do not replay each other's ids into warm caches;
    scenario: a full scenario (several endpoints, a JSON file) instead of path, ids and id_max.
    """

    path: str = "/users/{id}"
    processes: int | None = None
    ids: str = "uniform"
    zipf_s: float = 1.1
    id_max: int | None = None
    seed: int | None = None
    scenario: Scenario | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise InputError("path", f"must start with '/', got {self.path!r}")
        if self.processes is not None:
            object.__setattr__(self, "processes", positive_int("processes", self.processes))
        if self.id_max is not None:
            object.__setattr__(self, "id_max", positive_int("id_max", self.id_max))
        if isinstance(self.scenario, str | Path):
            object.__setattr__(self, "scenario", Scenario.from_file(self.scenario))
        elif self.scenario is not None and not isinstance(self.scenario, Scenario):
            raise InputError(
                "scenario", f"must be a Scenario or a path to a JSON file, got {self.scenario!r}"
            )
        self.requests(id_max=1, seed=self.seed or 0)  # InputError names ids, zipf_s or seed

    def replace(self, **changes: Any) -> Load:
        """This load with some fields changed; InputError names a keyword that is no field."""
        unknown = sorted(set(changes) - FIELDS)
        if unknown:
            raise InputError(
                unknown[0], f"is no load option; the load's are {', '.join(sorted(FIELDS))}"
            )
        return dataclasses.replace(self, **changes) if changes else self

    def seeded(self) -> Load:
        """This load with its seed drawn now when unset: a run records the seed it used."""
        if self.seed is not None or self.scenario is not None:
            return self
        return dataclasses.replace(self, seed=random.SystemRandom().randrange(2**31))

    def profile(self) -> LoadProfile:
        """The load's profile alone: what each generator process paces itself by."""
        return LoadProfile(**{f.name: getattr(self, f.name) for f in PROFILE_FIELDS})

    def requests(self, *, id_max: int | None = None, seed: int | None = None) -> Scenario:
        """The requests: the scenario given, or GET of `path`, `{id}` over 1..id_max.

        id_max: the target's id range, used when the load sets none; seed: when the load sets none
        (None: a fresh one).
        """
        if self.scenario is not None:
            return self.scenario
        if seed is None:
            seed = self.seed if self.seed is not None else random.SystemRandom().randrange(2**31)
        return dataclasses.replace(
            Scenario.default(self.path, id_max=self.id_max or id_max or DEFAULT_ID_MAX),
            ids=self.ids,
            zipf_s=self.zipf_s,
            seed=seed,
        )

    def to_dict(self) -> dict[str, Any]:
        """The load as a JSON-able dict (a run's manifest `profile`); unset extras left out."""
        out: dict[str, Any] = {
            "path": self.path,
            "connections": self.connections,
            "duration": self.duration,
            "rate": self.rate,
            "arrival": self.arrival if self.rate else None,
            "warmup": self.warmup,
            "processes": self.processes,
            "ids": self.ids,
            "zipf_s": self.zipf_s if self.ids == "zipf" else None,
            "seed": self.seed,
        }
        # only when set, so that the profile (and a sweep's id, hashed from it) stays as it was
        if self.stages:
            out["stages"] = [[s.duration, s.target] for s in self.stages]
        if self.think_time:
            out["think_time"] = self.think_time
        if self.id_max is not None:
            out["id_max"] = self.id_max
        if self.scenario is not None:
            out["scenario"] = [e.path for e in self.scenario.endpoints]
        return out


PROFILE_FIELDS = dataclasses.fields(LoadProfile)
FIELDS = frozenset(f.name for f in dataclasses.fields(Load))
