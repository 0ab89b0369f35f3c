"""Characterization of ingested traces (issue 3, in progress).

Built: request traces (`requests`, `prefix`), cluster job traces (`jobs`, `utilization`), the catalog
helpers (`catalog`), HTML/JSON reports (`report`, `build`, `build_jobs`) and `tracelab analyze` (`cli`).
Not built yet: workload models (fit + regenerate) and the notebooks reproducing the published figures.
"""
