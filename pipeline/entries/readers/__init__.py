"""One reader per entry file format; each turns a file into an Article or raises EntryError."""
