"""The audit trail: the log file and the database table that record every write (log.py, database.py),
and both read back as runs and their writes (trail.py, reading.py) for history, undo and report.
Below the write side and the read side alike: repairs write it, queries read it."""
