"""The machinery of ``make bench``: processes, load, scenarios and the report (bench/run.py drives it)."""
