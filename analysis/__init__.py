"""Characterization of ingested traces.

Request traces (`requests`, `prefix`), cluster job traces (`jobs`, `utilization`, `pai`), the catalog
helpers (`catalog`), HTML/JSON reports (`report`, `build`, `build_jobs`) and `tracelab analyze` (`cli`);
workload models that fit a trace and regenerate look-alikes (`workload_model` for requests,
`job_workload_model` + `arrival_families` + `job_workload_compare` for jobs). The notebooks in
`notebooks/` reproduce the published figures with these functions.
"""
