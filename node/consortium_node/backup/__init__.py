"""Backups of a chain: export at a committed height, offline verification, restore.

format.py (the on-disk format and the pure trust rule), archive.py (verify/list from disk),
export.py (from a running node's data dir), restore.py (into a node's data dir). Used by
cli/backup.py, cli/up.py (`consortium up --restore`) and bench/."""
