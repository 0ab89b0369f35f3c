"""Mooncake FAST'25: the real conversation and synthetic traces, and a tool&agent fixture with bad lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.errors import ChecksumError
from ingest.pipeline import run_source


def test_real_conversation_and_synthetic(traces: Path, data_root, query) -> None:
    result = run_source("mooncake_fast25", traces / "mooncake", data_root=data_root.root)
    assert sorted((t.trace, t.rows_in, t.rows_out, t.rows_quarantined) for t in result.tables) == [
        ("mooncake_conversation", 12031, 12031, 0),
        ("mooncake_synthetic", 3993, 3993, 0),
    ]
    assert result.missing_inputs == ["toolagent_trace.jsonl"]
    stats = {r[0]: r[1:] for r in query(
        "SELECT trace, count(*), sum(prompt_tokens), sum(output_tokens), avg(prompt_tokens), avg(output_tokens), "
        "count(DISTINCT arrival_s), min(arrival_s), max(arrival_s), min(request_id), max(request_id) "
        "FROM requests GROUP BY trace")}
    conv, synth = stats["mooncake_conversation"], stats["mooncake_synthetic"]
    assert conv[:3] == (12031, 144_793_823, 4_122_048)
    assert conv[3] == pytest.approx(12_035.0613, abs=1e-4)  # published: 12,035
    assert conv[4] == pytest.approx(342.6189, abs=1e-4)  # published: 343
    assert conv[5:] == (1180, 0.0, pytest.approx(3536.999, abs=1e-9), 0, 12030)  # quantized arrivals, ms -> s
    assert synth[:3] == (3993, 61_194_628, 595_432)
    assert synth[3] == pytest.approx(15_325.4766, abs=1e-4)  # published: 15,325
    assert synth[5:] == (3982, 0.0, pytest.approx(1022.025, abs=1e-9), 0, 3992)
    checks = {r[0]: r[1:] for r in query(
        "SELECT trace, count(*) FILTER (prefix_block_hashes[1] = 0), "
        "count(*) FILTER (len(prefix_block_hashes) = ceil(prompt_tokens / 512)), "
        "count(DISTINCT prefix_block_hashes[1]), sum(len(prefix_block_hashes)), max(list_max(prefix_block_hashes)) "
        "FROM requests GROUP BY trace")}
    assert checks["mooncake_conversation"] == (12031, 12031, 1, 288_500, 182_789)  # every request starts with block 0
    assert checks["mooncake_synthetic"][1:] == (3993, 2211, 121_877, 43_923)
    # ties in the quantized timestamps keep line order: arrival never decreases along request_id
    out_of_order = query(
        "SELECT count(*) FROM (SELECT trace, arrival_s - lag(arrival_s) OVER (PARTITION BY trace ORDER BY request_id) AS d "
        "FROM requests) WHERE d < 0")
    assert out_of_order == [(0,)]
    assert query("SELECT max(n) FROM (SELECT count(*) AS n FROM requests WHERE trace = 'mooncake_conversation' "
                 "GROUP BY arrival_s)") == [(28,)]
    first = query("SELECT request_id, arrival_s, prompt_tokens, output_tokens, prefix_block_hashes FROM requests "
                  "WHERE trace = 'mooncake_conversation' ORDER BY request_id LIMIT 2")
    assert first == [(0, 0.0, 6758, 500, list(range(14))), (1, 0.0, 7322, 490, [0, *range(14, 28)])]
    reports = dict(query("SELECT trace, report FROM traces"))
    assert '"sha256_verified": "b8cbb061a85206d729d91cdc2981f43c9e0d99209dce588d3af5f7934408b9df"' in reports[
        "mooncake_conversation"]


def _line(ts, inp, out, ids) -> str:
    return json.dumps({"timestamp": ts, "input_length": inp, "output_length": out, "hash_ids": ids})


TOOLAGENT = "\n".join([
    _line(0, 1000, 20, [0, 1]),
    _line(0, 513, 5, [0, 2]),  # tie with line 1: keeps line order
    '{"timestamp": 3000, "input_length": 100, "output_length": 7, "hash_ids": [3]',  # malformed (truncated)
    '{"timestamp": 3000, "input_length": 100, "hash_ids": [3]}',  # missing key
    _line(3000, -5, 7, [3]),  # negative value
    "",  # blank line
    _line("3000", 100, 7, [3]),  # timestamp as a string
    _line(3000, 100, 7, [3, "x"]),  # non-integer hash id
    _line(3000, 100, 7, 3),  # hash_ids not a list
    "[1, 2, 3]",  # not an object
    _line(3000, 100, True, [3]),  # a boolean is not an integer
    _line(4500, 2048.0, 7, [0, 4, 5, 6]),  # integral float accepted
    _line(6001, 0, 0, []),  # empty prompt: zero blocks
]) + "\n"


def test_toolagent_fixture_quarantine(tmp_path: Path, data_root, query) -> None:
    (tmp_path / "toolagent_trace.jsonl").write_text(TOOLAGENT)
    result = run_source("mooncake_fast25", tmp_path, data_root=data_root.root)
    (table,) = result.tables
    assert (table.trace, table.rows_in, table.rows_out, table.rows_quarantined) == ("mooncake_toolagent", 13, 4, 9)
    rows = query("SELECT request_id, arrival_s, prompt_tokens, output_tokens, prefix_block_hashes, session_id "
                 "FROM requests ORDER BY arrival_s, request_id")
    assert rows == [
        (0, 0.0, 1000, 20, [0, 1], None),
        (1, 0.0, 513, 5, [0, 2], None),
        (11, 4.5, 2048, 7, [0, 4, 5, 6], None),  # request_id = 0-based line position
        (12, pytest.approx(6.001, abs=1e-9), 0, 0, [], None),
    ]
    bad = query("SELECT line, reason, raw FROM quarantine ORDER BY line")
    assert [(line, reason) for line, reason, _ in bad] == [
        (3, "malformed JSON (Expecting ',' delimiter at column 77)"),
        (4, "missing key 'output_length'"),
        (5, "negative input_length '-5'"),
        (6, "blank line"),
        (7, "wrong type timestamp: expected an integer, found str '3000'"),
        (8, "wrong type hash_ids[1]: expected an integer, found 'x'"),
        (9, "wrong type hash_ids: expected a list of integers, found int 3"),
        (10, "expected a JSON object, found list"),
        (11, "wrong type output_length: expected an integer, found bool True"),
    ]
    assert bad[2][2] == _line(3000, -5, 7, [3]) and bad[3][2] is None
    assert bad[0][1].startswith("malformed JSON") and bad[0][2].endswith('"hash_ids": [3]')


def test_published_checksum_is_verified(tmp_path: Path, data_root) -> None:
    (tmp_path / "synthetic_trace.jsonl").write_text(_line(0, 10, 1, [0]) + "\n")
    with pytest.raises(ChecksumError, match="synthetic_trace.jsonl: checksum mismatch"):
        run_source("mooncake_fast25", tmp_path, data_root=data_root.root)
    result = run_source("mooncake_fast25", tmp_path, data_root=data_root.root, verify=False)
    assert [(t.trace, t.rows_out) for t in result.tables] == [("mooncake_synthetic", 1)]
