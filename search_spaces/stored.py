"""The sweep spec as the store keeps it (`sweeps.spec`): the SweepSpec plus the service's metadata for it.

`store_sweep` and `extend_sweep` (service.submission) write it, the driver (workers.driver) reads it. Rows written
before this model held one flat dict (the SweepSpec's fields with `name`, `data_root` and `extensions` mixed in);
they still load (`_accept_flat`), so databases in the field keep working.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from search_spaces.spec import SweepSpec

META = ("data_root", "extensions")  # the service's keys of the old flat layout; everything else is the SweepSpec
OLD_CONSTRAINTS = {"min_flops": "min_macs", "max_flops": "max_macs"}  # names of rows stored before the MACs rename


class Extension(BaseModel):
    """One `extend`: the trials it appended (idx >= first_idx, n_trials of them) and the patch that made them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first_idx: int = Field(ge=0)
    n_trials: int = Field(ge=1)
    patch: dict[str, Any] = {}


class StoredSweep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: SweepSpec  # with its name set
    data_root: str | None = None  # absolute; None: the dataset needs none
    extensions: list[Extension] = []

    @model_validator(mode="before")
    @classmethod
    def _accept_flat(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "spec" not in data:  # the old layout: spec fields and metadata side by side
            data = {"spec": {k: v for k, v in data.items() if k not in META},
                    **{k: data[k] for k in META if k in data and data[k] is not None}}
        spec = data["spec"]
        if isinstance(spec, dict) and isinstance(spec.get("constraints"), dict):
            c = spec["constraints"]
            c = {OLD_CONSTRAINTS.get(k, k): v for k, v in c.items() if not (k in OLD_CONSTRAINTS and v is None)}
            data = {**data, "spec": {**spec, "constraints": c}}
        return data

    @property
    def is_search(self) -> bool:
        """A sampler sweep (tpe, nsga2): its trials are created as they are sampled, not all at submission."""
        return self.spec.search is not None and self.spec.search.is_search

    @property
    def name(self) -> str | None:
        return self.spec.name

    def launch_ranges(self) -> list[tuple[int, int | None]]:
        """[(first idx, end idx or None)] of each launch: the submission's trials, then each extension's."""
        starts = [0] + [e.first_idx for e in self.extensions]
        return list(zip(starts, [*starts[1:], None], strict=True))

    def extended(self, spec: SweepSpec, extension: Extension) -> StoredSweep:
        """This sweep after an `extend`: the patched spec (the name kept) and one more extension."""
        return StoredSweep(spec=spec.model_copy(update={"name": self.spec.name}), data_root=self.data_root,
                           extensions=[*self.extensions, extension])

    def to_json(self) -> dict[str, Any]:
        """What `sweeps.spec` holds."""
        return self.model_dump(mode="json")
