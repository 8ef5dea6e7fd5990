"""One reader per entry file format; each turns a file into an Article or raises EntryError.

A new format is one module here (a `read(path, text, config)` function) and one line in
READERS, by file extension.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from pipeline.core.config import Config
from pipeline.core.errors import Problem
from pipeline.core.models import Article

Read = Callable[[Path, str, Config], tuple[Article | None, list[Problem]]]
# (the file's text, the entry's URL) → its body's safe HTML
ReadBody = Callable[[str, str], str]


class LazyReader:
    """A reader imported on first use: a run where no entry changed imports neither YAML nor
    Markdown (that is most of a no-op run's time budget).

    `body`, if the format has one, renders the body alone from the file's text: a cached entry
    shown in a feed then needs no second parse of its fields.
    """

    def __init__(self, module: str, function: str, body: str = "") -> None:
        self.module, self.function, self.body = module, function, body
        self._module: ModuleType | None = None

    def load(self) -> Read:
        # The module is kept once imported: import_module's look-up, even of a loaded
        # module, was a few per cent of reading an entry.
        if self._module is None:
            self._module = importlib.import_module(self.module)
        return getattr(self._module, self.function)  # type: ignore[no-any-return]

    def body_reader(self) -> ReadBody | None:
        return getattr(importlib.import_module(self.module), self.body) if self.body else None

    def __call__(self, path: Path, text: str, config: Config
                 ) -> tuple[Article | None, list[Problem]]:
        return self.load()(path, text, config)


_MARKDOWN = LazyReader("pipeline.entries.readers.markdown", "read_markdown", "read_body")
READERS: dict[str, Read] = {
    ".md": _MARKDOWN,
    ".markdown": _MARKDOWN,
    ".txt": LazyReader("pipeline.entries.readers.journal_page", "read_journal_page"),
}
