"""`python -m pipeline`, and the `newsletter` command's entry point (pyproject.toml)."""

import gc

# A command's process makes most of its objects by importing ~500 modules, nearly all of which
# live till it ends: with the default thresholds (700, 10, 10) the collector walked them ~85
# times in a run after one new entry, ~10 ms of its ~0.29 s. Set here, in the command's own
# process only, before those imports.
gc.set_threshold(5_000, 10, 10)

from pipeline.cli.main import main  # noqa: E402

if __name__ == "__main__":
    main()
