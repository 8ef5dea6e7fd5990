"""premailer without the parts of it this pipeline never uses, which cost a run that builds a
digest ~0.08 s of its ~0.45 s:

- Imports for fetching remote stylesheets, which we never do (allow_network=False): premailer
  imports `requests`, cssutils `urllib.request`, `encutils` and `importlib.metadata` (for its
  User-Agent), all at the top of their modules and used only inside their fetch functions. A
  stand-in takes each one's place in those modules' namespaces and imports the real module
  the first time any attribute of it is read. (`importlib.util.LazyLoader` cannot do this: an
  `import requests` statement reads the module's `__spec__`, which makes LazyLoader load it
  at once.)
- cssutils' property validation: premailer's `disable_validation` does not reach the inline
  styles it merges (merge_style.csstext_to_pairs validates them regardless), and validating
  compiles a large regular expression per CSS property on first use. Validation only writes
  log records, which inline_css silences; so while premailer runs, cssutils is given an empty
  profile registry and has nothing to check. The result is the same document
  (tests/publishing/test_inline_css.py compares the two).
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# What premailer and cssutils import only to fetch remote stylesheets.
NEVER_USED = ("requests", "urllib.request", "encutils", "importlib.metadata")
_SWAP = threading.Lock()  # cssutils.profile is one global: one swap at a time
_no_profiles: Any = None


class Deferred(types.ModuleType):
    """Stands in for a module until one of its attributes is read, then imports the real one
    and hands out its attributes. Its `__spec__` is None, so an import statement that finds it
    in sys.modules takes it as loaded without reading anything else."""

    def __getattr__(self, name: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), name)


def import_deferring(module: str, deferred: tuple[str, ...]) -> types.ModuleType:
    """Import `module` with each of `deferred` not yet imported stood in for (see Deferred).
    The stand-ins leave sys.modules afterwards, so any later import of those modules gets the
    real thing; only the namespaces that imported them meanwhile keep them."""
    placed = {name: Deferred(name) for name in deferred if name not in sys.modules}
    sys.modules.update(placed)
    for name, stand_in in placed.items():
        # `import urllib.request` binds `urllib` and reads `request` from it later: as after a
        # real import, the package holds the submodule (the real one replaces it on import).
        package, _, child = name.rpartition(".")
        if package and child not in vars(importlib.import_module(package)):
            setattr(sys.modules[package], child, stand_in)
    try:
        return importlib.import_module(module)
    finally:
        for name, stand_in in placed.items():
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]


def premailer_class() -> type:
    """premailer's class, cssutils not imported until something asks it (css_memo.py
    answers what premailer asks it, from earlier runs)."""
    return import_deferring("premailer", (*NEVER_USED, "cssutils")).Premailer  # type: ignore[no-any-return]


@contextmanager
def without_css_validation() -> Iterator[None]:
    """cssutils with no profiles to validate against while the block runs (see above)."""
    global _no_profiles
    import cssutils
    from cssutils.profiles import Profiles

    class NoProfiles(Profiles):
        """Profiles() registers the standard profiles (~6 ms expanding their macros), only
        for removeProfile to drop them again: this one registers none to begin with."""

        def addProfiles(self, profiles: object) -> None:
            pass

    with _SWAP:
        if _no_profiles is None:
            empty = NoProfiles(log=cssutils.log)
            empty.removeProfile(all=True)  # empty in any case, whatever Profiles() does
            _no_profiles = empty
        kept, cssutils.profile = cssutils.profile, _no_profiles
        try:
            yield
        finally:
            cssutils.profile = kept
