"""Model families. Each module provides `build_model(config)` and, if it learns, `compute_loss(model, batch)`."""

from __future__ import annotations

import importlib
from types import ModuleType

FAMILIES = {
    "transfer": "wakeword.models.transfer",
    "e2e": "wakeword.models.e2e",
    "phoneme": "wakeword.models.phoneme",
    "cascade": "wakeword.models.cascade",
}


def get_family(name: str) -> ModuleType:
    """The module implementing family `name`; an unknown name is an error listing the known ones."""
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r} (known: {', '.join(FAMILIES)})")
    return importlib.import_module(FAMILIES[name])
