"""Microsoft ITP job traces (ElasticFlow, ASPLOS'23): 10 clusters, 2021-03-04 -> 2021-05-03, 69,351 jobs.

Upstream ``data/raw-traces.tar.gz`` holds ``cluster01.csv`` ... ``cluster10.csv`` at the archive root,
each ``job_id,submission_time,duration,num_gpu`` (FORMATS.md §9). All ten files share one clock:
integer seconds since the start of collection. They become one trace, ``microsoft_itp``, whose
origin is the earliest submission over *all* clusters (1,999 s, in cluster07); clusters are never
rebased separately, so cross-cluster arrival times stay comparable.

Upstream has no start/end, status, user or VC: ``start_s``/``end_s`` are null, ``duration_s`` is the
upstream run time, ``status`` is ``unknown`` and ``raw_status`` null. Job ids are UUIDs; a duplicate
id anywhere in the trace (any cluster) is rejected, the first occurrence wins (clusters in order,
then lines). The files end without a newline; the line reader keeps the last row.

Each cluster file is its own table plan, so the trace lands as one Parquet part per cluster and every
part can be produced on its own (``ingest run --backend ray``): the plan of cluster *k* rejects ids
repeated within its file and ids already taken by a good row of clusters 1..k-1 (it scans those
files' ids; the files are small).
"""

from __future__ import annotations

import polars as pl

from ingest.checks import parse_number, reject_duplicates, require, seconds_to_us
from ingest.inputs import InputSet, InputSpec, ResolvedInput
from ingest.lines import FILE, LINE, RAW, REASON, check_header, scan_lines, split_fields
from ingest.schema import JOBS
from ingest.sources.base import RemoteFile, Source, TablePlan, TimeBase

TRACE = "microsoft_itp"
CLUSTERS = tuple(f"cluster{i:02d}" for i in range(1, 11))
"""The ten cluster names, which are also the file stems."""
COLUMNS = ("job_id", "submission_time", "duration", "num_gpu")
"""The raw-traces header, in file order."""
ARCHIVE = "raw-traces.tar.gz"
ARCHIVE_URL = "https://github.com/microsoft/elasticflow-traces/raw/main/data/raw-traces.tar.gz"
ARCHIVE_SHA256 = "67398e1a89245c50ae0881bf997e6cda0c95f9f47980af5bc56d67998965669f"
ARCHIVE_BYTES = 1_943_846
MEMBER_SHA256 = {
    "cluster01.csv": "27d707f576fce5637f9efec43f610da3d335f36e3c6fd4ded2f5bccfce05974a",
    "cluster02.csv": "7a5849e73aff9f9bc33f87c9bacadf8aab2f3a9e7bc5d70956f5cbf40126526c",
    "cluster03.csv": "282d765c5289ab0ba870f494dd2c67893f9d16d726fdc8a51f13b7412515dbf8",
    "cluster04.csv": "247850e4265f35749e98d15e82a67765301e81272334265f1fe60d65787892a9",
    "cluster05.csv": "1553359ddd673a0ffc531ca10e73ba729dbacbce905ce878dbb8499d2dbed0fb",
    "cluster06.csv": "52c0d9247d1de9b19a8bdafc25137daf6fa04f274ad3a2eb6dac51226ac2362e",
    "cluster07.csv": "d4f46f32e2965c2265b2675c070565a86e40bff45733c828c5767bc0b8c1b318",
    "cluster08.csv": "d60c20d0cd05ddf49fddffabbc784ba6177bbc1a762fc5cf8a0bc9056b084db8",
    "cluster09.csv": "da4047d6f09cc41709ff85937c82e31f6a6791c896d22e241ae9e1dc7f82bcfd",
    "cluster10.csv": "139abea485b52090f5950d0f28d82878169df408e36052ec5c7cd04a3f3fcfa7",
}
"""sha256 of the tarball's members at commit 277ed24d (computed, not published: FORMATS.md §10)."""


def _parse_int(lf: pl.LazyFrame, raw: str, out: str) -> pl.LazyFrame:
    """A required non-negative integer (parse_number rejects values beyond Int64)."""
    return parse_number(lf, raw, out, dtype=pl.Int64, min_value=0)


def parse_cluster(inp: ResolvedInput, cluster: str) -> pl.LazyFrame:
    """Parse one ``clusterNN.csv`` (header checked) into the canonical job columns plus bookkeeping."""
    check_header(inp.path, inp.display, COLUMNS)
    lf = split_fields(scan_lines(inp.path, inp.display, skip_header=True), COLUMNS)
    lf = require(lf, "job_id")
    lf = _parse_int(lf, "submission_time", "_submit_rel_s")
    lf = _parse_int(lf, "duration", "_duration_s")
    lf = _parse_int(lf, "num_gpu", "_num_gpus")
    return lf.select(
        pl.lit(TRACE).alias("trace"),
        pl.lit(cluster).alias("cluster"),
        pl.col("job_id").str.strip_chars(),
        pl.lit(None, pl.String).alias("user"),
        pl.lit(None, pl.String).alias("group"),
        # staged as microseconds on the upstream clock (seconds since collection start)
        seconds_to_us(pl.col("_submit_rel_s").cast(pl.Float64)).alias("submit_s"),
        pl.lit(None, pl.Int64).alias("start_s"),
        pl.lit(None, pl.Int64).alias("end_s"),
        pl.col("_duration_s").cast(pl.Float64).alias("duration_s"),
        pl.col("_num_gpus").cast(pl.Float64).alias("num_gpus"),
        pl.lit(None, pl.Float64).alias("num_cpus"),
        pl.lit(None, pl.Int32).alias("num_nodes"),
        pl.lit(None, pl.String).alias("gpu_type"),
        pl.lit("unknown").alias("status"),
        pl.lit(None, pl.String).alias("raw_status"),
        FILE, LINE, RAW, REASON,
    )


def jobs_plans(found: list[tuple[ResolvedInput, str]]) -> list[TablePlan]:
    """One jobs plan per cluster file found, in order; duplicate job ids are caught across clusters.

    A row of cluster *k* is a duplicate if an earlier line of its file, or a good row of an earlier
    cluster, has its id (rows rejected for other reasons claim no id): exactly what one
    :func:`~ingest.checks.reject_duplicates` over the concatenation of all files would reject.
    """
    frames = [parse_cluster(inp, cluster) for inp, cluster in found]
    plans = []
    for k, lf in enumerate(frames):
        lf = reject_duplicates(lf, ["job_id"], "job_id")
        if k:
            claimed = (
                pl.concat([f.filter(pl.col(REASON).is_null()).select("job_id") for f in frames[:k]], how="vertical")
                .unique()
                .with_columns(pl.lit(True).alias("_claimed"))
            )
            lf = (
                lf.join(claimed, on="job_id", how="left", maintain_order="left")
                .with_columns(
                    pl.when(pl.col(REASON).is_null() & pl.col("_claimed").fill_null(False))
                    .then(pl.format("duplicate job_id '{}'", pl.col("job_id")))
                    .otherwise(pl.col(REASON))
                    .alias(REASON)
                )
                .drop("_claimed")
            )
        plans.append(TablePlan(JOBS, TRACE, lf))
    return plans


class MicrosoftITP(Source):
    """Microsoft ITP raw job traces: arrival, duration and GPU count of 69,351 jobs in 10 clusters."""

    name = "microsoft_itp"
    title = "Microsoft ITP job traces (ElasticFlow, ASPLOS'23): 10 clusters, Mar-May 2021, 69,351 jobs"
    local_dir = "microsoft_itp"
    inputs = tuple(InputSpec(f"{c}.csv", containers=(ARCHIVE,), required=False) for c in CLUSTERS)
    downloads = (RemoteFile(ARCHIVE, ARCHIVE_URL, ARCHIVE_SHA256, ARCHIVE_BYTES),)
    extra_checksums = MEMBER_SHA256
    time_base = TimeBase("UTC", "seconds since collection start (2021-03-04)")

    def plan(self, inputs: InputSet) -> list[TablePlan]:
        """One jobs plan per cluster file found (see :func:`jobs_plans`)."""
        found = [(inp, c) for c in CLUSTERS if (inp := inputs.get(f"{c}.csv")) is not None]
        return jobs_plans(found)


SOURCES = (MicrosoftITP(),)
"""Microsoft ITP: all ten real raw-trace files are available offline."""
