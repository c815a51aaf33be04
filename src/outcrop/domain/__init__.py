"""Pure domain logic: jobs, records, catalog. No I/O, no web framework, no database driver."""
