"""The named sweeps (search_spaces.presets): name, description, own parameters and trial count. Thin."""

from __future__ import annotations

from fastapi import APIRouter

from search_spaces.plan import make_plan
from search_spaces.presets import list_presets, resolve
from search_spaces.spec import SpecError, expand
from service.deps import SettingsDep
from service.schemas import PresetOut

router = APIRouter(tags=["presets"])


def preset_trials(name: str, *, max_trials: int, data_root: str | None) -> int:
    """Trials of the preset as submitted without overrides: the plan's (constraints applied), or, where the plan
    needs a data root the service lacks (an image-folder dataset), the expanded grid's; a search: its budget."""
    spec = resolve(name)
    if spec.search is not None and spec.search.is_search:
        return int(spec.search.budget_trials or 0)
    try:
        return len(make_plan(spec, max_trials=max_trials, data_root=data_root).trials)
    except SpecError:
        return len(expand(spec))


@router.get("/presets", response_model=list[PresetOut])
def presets(settings: SettingsDep) -> list[PresetOut]:
    """Every preset with its description (which figure or table of which study it reproduces) and trial count."""
    return [PresetOut(name=p.name, description=p.description, params=p.params,
                      n_trials=preset_trials(p.name, max_trials=settings.max_trials, data_root=settings.data_root))
            for p in list_presets()]
