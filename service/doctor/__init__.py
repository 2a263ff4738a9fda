"""`deals doctor`: four diagnoses of a live database and the service's /metrics.

report.py holds what a check ends with (Check) and every threshold
(Thresholds); metrics.py reads the Prometheus text of /metrics; indexes.py
the indexes the migrations define; checks.py runs the checks, in the order
ops.md fixes: n_plus_one, missing_index, pool, bloat.
"""
