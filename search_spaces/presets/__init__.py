"""Named sweeps: every grid of the studies (science.md; docs/presets.md lists them) and a small demo.

One module per study registers its presets (`@register_preset(name, description)`); each preset runs at its
study's fidelity and takes fidelity overrides (`epochs`, `n_train`, `width_multiplier`), its own parameters, or
any SweepSpec field through `resolve(name, overrides)`.
"""

from search_spaces.presets import demo, huang2021, wu2021, xing2022  # noqa: F401  (register the presets)
from search_spaces.presets.registry import FIDELITY, Preset, get_preset, list_presets, register_preset, resolve

__all__ = ["FIDELITY", "Preset", "get_preset", "list_presets", "register_preset", "resolve"]
