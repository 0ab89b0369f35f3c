"""Alibaba PAI cluster-trace-gpu-v2020 (MLaaS in the Wild, NSDI'22): all 7 tables (FORMATS.md §4).

Upstream ships seven ``<table>.tar.gz`` archives, each holding one **headerless** ``<table>.csv`` at
its root; the column names come in separate ``.header`` files and are fixed here
(:data:`~ingest.sources.alibaba_pai_tables.COLUMNS`). Both the archives and the extracted CSVs have
published sha256 values, and both are verified.

Tables produced (trace ``alibaba_pai_2020``), built in :mod:`ingest.sources.alibaba_pai_tables`:

* ``jobs`` from the job table, joined with the task table (GPUs/CPUs requested, earliest task start,
  GPU type) and the group-tag table (``group``; an empty or absent tag falls back to the job's user,
  as the official ``utils.get_dfa`` does; without the group-tag file ``group`` is null);
* ``pai_tasks``, ``pai_instances`` (deduplicated per ``worker_name`` the way the official
  ``utils.get_dfiw`` does; the dropped rows are quarantined), ``pai_instance_usage`` (sensor table +
  task plan), ``pai_machine_metric`` and ``machines`` (machine spec).

The group-tag table has no canonical table of its own: only ``group`` is used (for ``jobs.group``);
its ``gpu_type_spec`` and ``workload`` columns are not ingested, and its malformed rows are skipped.

Times: shifted float seconds; read as Unix seconds in Asia/Shanghai only the time of day and the weekday
are real. ``0`` and an empty field both mean missing.

Decisions (details in the table builders):

* ``jobs.submit_s`` is the job's start_time (the submission time) and cannot be null, so a job without
  one (Waiting jobs may have neither time) is quarantined; ``start_s`` is the earliest task start
  (README: wait = earliest task start - job start; a start before the submission is kept as is);
  a job without accepted tasks keeps ``num_gpus`` 0 (not nullable) with null num_cpus / gpu_type;
  ``gpu_type`` is that of the task requesting the most GPUs. Jobs are written in submission order.
* Only the four README statuses are known, for every table; any other value is quarantined.
* Sensor and machine-metric rows are not deduplicated; instances are, in one eager step at plan time
  (:func:`~ingest.sources.alibaba_pai_tables.duplicate_workers`).
"""

from __future__ import annotations

from ingest.inputs import InputSet, InputSpec
from ingest.sources.alibaba_pai_tables import (
    COLUMNS,
    group_tags,
    instances_plan,
    jobs_plan,
    machine_metric_plan,
    machines_plan,
    tasks_frame,
    tasks_plan,
    usage_plan,
)
from ingest.sources.base import RemoteFile, Source, TablePlan, TimeBase

OSS = "https://aliopentrace.oss-cn-beijing.aliyuncs.com/v2020GPUTraces/"

ARCHIVE_SHA256 = {
    "pai_job_table": "5aad7f7caac501136d14ed6a48e40546f825d7b0617a3a4f337e2348fe0a6cb0",
    "pai_task_table": "cd1d6dc3215d2a8607ccf6b6dd952b5db776df86926c73259fea7c1499ac40e5",
    "pai_instance_table": "1bf1e423a7ce3f8d086699801c362fd56a7182abdb234139e5ebbed97995ca06",
    "pai_sensor_table": "9a0b82e8bdf3949281e4ba1423d9b4b34847e52799eecb138966de46da69c7a0",
    "pai_group_tag_table": "722fef30b7fb7aa50dabd79155614b5423a9d65cf45a9b26c590d57725423a14",
    "pai_machine_spec": "cc0d38a4045af1b1af8179de8b1b54b1ddd995e6160d6d061a6b1000f1276c2d",
    "pai_machine_metric": "53ad917193d3b1dd0f3055e723148b1f36c2f81789b014ea2930a7875892eef5",
}
"""Published sha256 of each ``<table>.tar.gz`` (upstream README)."""

CSV_SHA256 = {
    "pai_job_table": "379ecb3becaba347f44a53bf7eb53e54b185221b2a0338a3f828828d269ba96c",
    "pai_task_table": "6954802b457305f8a9e480ef97c40060baee59649fd3adc62c5a1e048aa058de",
    "pai_instance_table": "b179f7d7e0927a6663d719b728c92640447c5a0fc3c6e4edff31e7207ab9dd17",
    "pai_sensor_table": "12dd9929b70f3efe18d1279d9873e3a519c64f431613b23b059ed8c46a376dd7",
    "pai_group_tag_table": "d23fcb56d88b2976fda4a62708d77b2a8c98635c4b443f100ed5553d4cd07fbe",
    "pai_machine_spec": "251e9e33649155a6a935fdc1dc0e90cd4698206936b60bd8fce60ff2ccd51439",
    "pai_machine_metric": "8b6592daab0373ef7fec730198b4df5891b1722c2ab4c7016249166e131402d3",
}
"""Published sha256 of each extracted ``<table>.csv`` (upstream README)."""

SIZES = {"pai_machine_spec": 30_449}
"""Exact archive sizes where known (upstream lists the others only rounded, ``ls -sh``)."""


class AlibabaPai2020(Source):
    name = "alibaba_pai_2020"
    title = "Alibaba PAI cluster-trace-gpu-v2020 (MLaaS in the Wild, NSDI'22): jobs, tasks, instances, sensors, machines"
    local_dir = "alibaba_pai_2020"
    # Every table is optional, so any subset (e.g. the offline machine spec alone) can be ingested.
    inputs = tuple(InputSpec(f"{t}.csv", containers=(f"{t}.tar.gz",), required=False) for t in COLUMNS)
    downloads = tuple(
        RemoteFile(f"{t}.tar.gz", f"{OSS}{t}.tar.gz", ARCHIVE_SHA256[t], SIZES.get(t)) for t in COLUMNS
    )
    extra_checksums = {f"{t}.csv": CSV_SHA256[t] for t in COLUMNS}
    time_base = TimeBase(
        "Asia/Shanghai", "PAI shifted seconds: only time of day and weekday are real (read as Unix seconds in UTC+8)"
    )

    def plan(self, inputs: InputSet) -> list[TablePlan]:
        """Plans for every table whose input was found (jobs use tasks and group tags when present)."""
        found = {t: inputs.get(f"{t}.csv") for t in COLUMNS}
        tasks = tasks_frame(found["pai_task_table"]) if found["pai_task_table"] else None
        plans: list[TablePlan] = []
        if found["pai_job_table"]:
            tags = group_tags(found["pai_group_tag_table"]) if found["pai_group_tag_table"] else None
            plans.append(jobs_plan(found["pai_job_table"], tasks, tags))
        if tasks is not None:
            plans.append(tasks_plan(tasks))
        if found["pai_instance_table"]:
            plans.append(instances_plan(found["pai_instance_table"]))
        if found["pai_sensor_table"]:
            plans.append(usage_plan(found["pai_sensor_table"], tasks))
        if found["pai_machine_metric"]:
            plans.append(machine_metric_plan(found["pai_machine_metric"]))
        if found["pai_machine_spec"]:
            plans.append(machines_plan(found["pai_machine_spec"]))
        return plans


SOURCES = (AlibabaPai2020(),)
