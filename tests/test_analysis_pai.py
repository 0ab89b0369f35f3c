"""analysis.pai on a hand-written PAI trace in the exact upstream format (headerless CSVs), every expected
value worked out by hand in the comments: fractional and zero GPU requests, a CPU task, an instance
without sensor rows, a worker with two sensor rows, a sensor row whose task is unknown, a duplicated
instance row (the official dedup keeps the Terminated one), missing start times."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from analysis import pai
from analysis.build_jobs import job_sections
from analysis.catalog import NotAvailable, open_catalog
from ingest.pipeline import run_source


def _h(key: str, width: int) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:width]


J1, J2, J3, J4, J5, J6 = (_h(f"job{k}", 24) for k in range(1, 7))
I = {j: _h(f"inst{j}", 60) for j in (J1, J2, J3, J4, J5, J6)}
W = {k: _h(f"w{k}", 60) for k in range(1, 10)}
U1, U2 = _h("u1", 12), _h("u2", 12)

JOBS = [f"{J1},{I[J1]},{U1},Terminated,1000.0,2000.0",
        f"{J2},{I[J2]},{U1},Failed,1000.0,3000.0",
        f"{J3},{I[J3]},{U2},Terminated,1200.0,1600.0",
        f"{J4},{I[J4]},{U2},Waiting,1300.0,",
        f"{J5},{I[J5]},{U2},Terminated,1500.0,1700.0"]
# job_name,task_name,inst_num,status,start_time,end_time,plan_cpu (%),plan_mem (GB),plan_gpu (%),gpu_type
TASKS = [f"{J1},tensorflow,2.0,Terminated,1010.0,1900.0,400.0,10.0,50.0,V100",  # 2 x 0.5 GPU
         f"{J2},ps,1.0,Failed,1100.0,2900.0,800.0,20.0,,",  # CPU task: empty plan_gpu and gpu_type
         f"{J2},worker,2.0,Failed,1200.0,2900.0,0,20.0,200.0,T4",  # zero CPU request
         f"{J3},worker,1.0,Terminated,1210.0,1600.0,100.0,5.0,100.0,V100",
         f"{J4},tensorflow,1.0,Waiting,0,,400.0,10.0,100.0,V100",  # never started
         f"{J5},evaluator,1.0,Terminated,1500.0,1700.0,200.0,4.0,0.0,"]  # zero GPU request
# job_name,task_name,inst_name,worker_name,inst_id,status,start_time,end_time,machine
INSTANCES = [f"{J1},tensorflow,{W[1]},{W[1]},{I[J1]},Terminated,1015.0,1900.0,m1",
             f"{J1},tensorflow,{W[2]},{W[2]},{I[J1]},Terminated,1030.0,1900.0,m2",
             f"{J2},ps,{W[3]},{W[3]},{I[J2]},Failed,1150.0,2900.0,m1",
             f"{J2},worker,{W[4]},{W[4]},{I[J2]},Failed,1260.0,2900.0,m2",
             f"{J2},worker,{W[5]},{W[5]},{I[J2]},Failed,0,0,m2",  # never started; no sensor row
             f"{J3},worker,{W[6]},{W[6]},{I[J3]},Failed,1220.0,1300.0,m1",  # earlier attempt: dropped
             f"{J3},worker,{W[6]},{W[6]},{I[J3]},Terminated,1400.0,1600.0,m1",  # kept (Terminated > Failed)
             f"{J4},tensorflow,{W[7]},{W[7]},{I[J4]},Waiting,,,",  # no sensor row
             f"{J5},evaluator,{W[9]},{W[9]},{I[J5]},Terminated,1500.0,1700.0,m2"]


def _sensor(job: str, task: str, w: int, cpu: str, gpu: str, avg_mem: str, max_mem: str) -> str:
    return f"{job},{task},{W[w]},{I[job]},m1,/dev/nvidia0,{cpu},{gpu},{avg_mem},{max_mem},1.0,2.0,10,20,1,2"


# cpu_usage (%), gpu_wrk_util (%), avg_mem, max_mem (GB)
SENSOR = [_sensor(J1, "tensorflow", 1, "200", "25", "5", "12"),  # r1
          _sensor(J1, "tensorflow", 2, "600", "50", "10", "10"),  # r2
          _sensor(J2, "ps", 3, "400", "", "5", "6"),  # r3: no GPU use measured, none requested
          _sensor(J2, "worker", 4, "100", "100", "30", "40"),  # r4: zero CPU request
          _sensor(J3, "worker", 6, "50", "100", "5", "5"),  # r5 \ one worker,
          _sensor(J3, "worker", 6, "150", "80", "4", "6"),  # r6 / two rows
          _sensor(J5, "evaluator", 9, "300", "5", "2", "3"),  # r7: zero GPU request
          _sensor(J6, "worker", 8, "100", "100", "1", "1")]  # r8: no such job or task: no plan


def _write(folder: Path, tables: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True)
    for table, lines in tables.items():
        (folder / f"{table}.csv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def con(data_root, tmp_path):
    folder = _write(tmp_path / "pai", {"pai_job_table": JOBS, "pai_task_table": TASKS,
                                       "pai_instance_table": INSTANCES, "pai_sensor_table": SENSOR})
    run_source("alibaba_pai_2020", folder, data_root=data_root.root, verify=False)
    c = open_catalog(data_root.root)
    yield c
    c.close()


def test_request_distribution(con) -> None:
    # GPU tasks: J1 0.5 x 2 instances, J2/worker 2 x 2, J3 1 x 1, J4 1 x 1: 4 tasks, 6 instances, 7 GPUs
    d = pai.request_distribution(con)
    assert d.rows() == [("0.5", 1, 0.25, 2, pytest.approx(1 / 3), 1.0, pytest.approx(1 / 7)),
                        ("1", 2, 0.5, 2, pytest.approx(1 / 3), 2.0, pytest.approx(2 / 7)),
                        ("2", 1, 0.25, 2, pytest.approx(1 / 3), 4.0, pytest.approx(4 / 7))]
    # with CPU tasks: J2/ps (empty plan_gpu) and J5 (plan_gpu 0) form '0'
    d = pai.request_distribution(con, by="size", gpu_only=False)
    assert d.select("key", "tasks", "instances", "gpus_requested").rows() == [
        ("0", 2, 2, 0.0), ("<1", 1, 2, 1.0), ("1", 2, 2, 2.0), ("2-4", 1, 2, 4.0)]
    d = pai.request_distribution(con, by="gpu_type")
    assert d.select("key", "tasks", "instances", "gpus_requested").rows() == [("T4", 1, 2, 4.0), ("V100", 3, 4, 3.0)]


def test_usage_ratios_and_coverage(con) -> None:
    u = pai.usage_cdf(con, resources=("cpu", "gpu", "mem", "mem_peak"), quantiles=(0.0, 0.5, 1.0))
    got = {(r, p): (n, v) for r, n, p, v in u.rows()}
    # cpu: r1 2/4, r2 6/4, r3 4/8, r5 0.5/1, r6 1.5/1, r7 3/2 (r4 requests 0 cores, r8 has no plan)
    assert [got[("cpu", p)] for p in (0.0, 0.5, 1.0)] == [(6, 0.5), (6, 1.0), (6, 1.5)]
    # gpu: r1 0.25/0.5, r2 0.5/0.5, r4 1/2, r5 1/1, r6 0.8/1 (r3 no request, r7 requests 0, r8 no plan)
    assert [got[("gpu", p)] for p in (0.0, 0.5, 1.0)] == [(5, 0.5), (5, pytest.approx(0.8)), (5, 1.0)]
    # mean host memory: .5, 1, .25, 1.5, 1, .8, .5; peak: 1.2, 1, .3, 2, 1, 1.2, .75
    assert got[("mem", 0.5)] == (7, pytest.approx(0.8)) and got[("mem_peak", 0.0)] == (7, pytest.approx(0.3))
    used = pai.usage_cdf(con, resources=("gpu",), value="used", quantiles=(0.5,))
    assert used.rows() == [("gpu", 5, 0.5, pytest.approx(0.8))]  # 0.25, 0.5, 1, 1, 0.8
    assert pai.usage_coverage(con) == {
        "sensor_rows": 8, "sensor_workers": 7, "duplicate_sensor_workers": 1, "no_task_plan": 1,
        "instances": 8, "instances_without_sensor": 2, "sensor_workers_without_instance": 1,  # w5, w7; w8
        "resources": {"cpu": {"measured": 6, "zero_request": 1, "no_request": 1, "no_use": 0},
                      "gpu": {"measured": 5, "zero_request": 1, "no_request": 2, "no_use": 1},
                      "mem": {"measured": 7, "zero_request": 0, "no_request": 1, "no_use": 0},
                      "mem_peak": {"measured": 7, "zero_request": 0, "no_request": 1, "no_use": 0}}}


def test_waits_under_both_definitions(con) -> None:
    # instance definition (first instance start - task start), GPU tasks: J1 1015-1010 = 5, J2/worker
    # 1260-1200 = 60 (w5 never started), J3 1400-1210 = 190 (the kept Terminated row), J4 never started
    w = pai.wait_cdf(con, by="size", definition="instance", quantiles=(0.5,))
    assert w.select("key", "tasks", "value_s").rows() == [("<1", 1, 5.0), ("1", 1, 190.0), ("2-4", 1, 60.0)]
    w = pai.wait_cdf(con, by="gpu_type", definition="instance", quantiles=(0.5,))
    assert w.select("key", "tasks", "mean_s", "value_s").rows() == [("V100", 2, 97.5, 97.5), ("T4", 1, 60.0, 60.0)]
    w = pai.wait_cdf(con, by=None, definition="instance", quantiles=(0.5,), gpu_only=False)
    assert w.select("tasks", "value_s").rows() == [(5, 50.0)]  # plus J2/ps 50 and J5 0: 0, 5, 50, 60, 190
    # job definition (README: earliest task start - submission) groups by the job's total request:
    # J1 is 2 x 0.5 = 1 GPU and waits 10; J3 1 GPU, 10; J2 4 GPUs, 1100-1000 = 100
    w = pai.wait_cdf(con, by="size", definition="job", quantiles=(0.5,))
    assert w.select("key", "jobs", "value_s").rows() == [("1", 2, 10.0), ("2-4", 1, 100.0)]
    w = pai.wait_cdf(con, by="gpu_type", definition="job", quantiles=(0.5,))
    assert dict(w.select("key", "value_s").rows()) == {"V100": 10.0, "T4": 100.0}
    with pytest.raises(ValueError, match="definition"):
        pai.wait_cdf(con, definition="task")
    with pytest.raises(ValueError, match="groups by"):
        pai.wait_cdf(con, by="user")


def test_characterize_and_report_section(con) -> None:
    c = pai.characterize_pai(con)
    third = pytest.approx(1 / 3)
    assert c["gpu_requests"] == {"gpu_tasks": 4, "gpu_instances": 6, "instance_share_fractional": third,
                                 "instance_share_one": third, "instance_share_multi": third,
                                 "instance_share_by_gpu_type": {"T4": third, "V100": pytest.approx(2 / 3)}}
    # below the request: cpu r1, r3, r5 of 6; gpu r1, r4, r6 of 5; mean memory r1, r3, r6, r7 of 7; peak r3, r7
    assert {r: v["share_below_request"] for r, v in c["usage"].items()} == pytest.approx(
        {"cpu": 0.5, "gpu": 0.6, "mem": 4 / 7, "mem_peak": 2 / 7})
    assert c["usage"]["gpu"]["median_used_over_requested"] == pytest.approx(0.8)
    assert c["median_wait_s_instance"]["gpu_type"] == {"V100": 97.5, "T4": 60.0}
    assert c["median_wait_s_job"]["size"] == {"1": 10.0, "2-4": 100.0}
    json.dumps(c)
    sections, numbers = job_sections(con, "alibaba_pai_2020")
    assert sections[-1].title.startswith("PAI") and len(sections[-1].figures) == 4 and not sections[-1].notes
    assert numbers["pai"]["usage_coverage"]["instances_without_sensor"] == 2


def test_missing_tables_and_other_traces(data_root, tmp_path) -> None:
    # jobs and tasks only: no instances, no sensor rows
    folder = _write(tmp_path / "pai", {"pai_job_table": JOBS, "pai_task_table": TASKS})
    run_source("alibaba_pai_2020", folder, data_root=data_root.root, verify=False)
    helios = tmp_path / "helios" / "data" / "Venus"
    helios.mkdir(parents=True)
    (helios / "cluster_log.csv").write_text(
        "job_id,user,vc,gpu_num,cpu_num,node_num,state,submit_time,start_time,end_time,duration,queue\n"
        "1,uA,vcA,1,4,1,COMPLETED,2020-04-01 00:00:00,2020-04-01 00:00:10,2020-04-01 00:01:10,60,10\n")
    run_source("helios_2020", tmp_path / "helios", data_root=data_root.root, verify=False)
    with open_catalog(data_root.root) as con:
        with pytest.raises(NotAvailable, match="pai_instance_usage"):
            pai.usage_cdf(con)
        with pytest.raises(NotAvailable, match="pai_instances"):
            pai.wait_cdf(con, definition="instance")
        c = pai.characterize_pai(con)
        assert c["usage"].startswith("not available") and c["gpu_requests"]["gpu_tasks"] == 4
        assert isinstance(c["median_wait_s_instance"]["size"], str)
        assert pai.has_pai_tables(con, "alibaba_pai_2020") and not pai.has_pai_tables(con, "helios")
        sections, numbers = job_sections(con, "helios")
        assert "pai" not in numbers and not any(s.title.startswith("PAI") for s in sections)
