"""Where the digests' web copies live under public/: named apart from web_copies.py, which
imports the templates (jinja2), because a first run checks for an archive before it reads."""

ARCHIVE_DIR = "digests"  # under public/: each digest's web copy and the archive index
ARCHIVE_PAGE = f"{ARCHIVE_DIR}/index.html"
