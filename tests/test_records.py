"""The streaming JSON-array reader (ingest.records.iter_json_array): items cut at every chunk boundary
read back exactly, and malformed or truncated arrays fail naming the file and the position."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.errors import FormatError
from ingest.records import _JsonArrayReader, iter_json_array

ITEMS = [{"a": 1, "b": [1.5, "x\u00e9"], "c": None}, 123456789, True, {"s": "long" * 20}, 1000.0, -2.5e-7, 7, [], {}]


def read(tmp_path: Path, text: str) -> list:
    path = tmp_path / "log.json"
    path.write_text(text, encoding="utf-8")
    return [item for _, item in iter_json_array(path, "log.json")]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
@pytest.mark.parametrize("indent", [None, 1])
def test_items_cut_at_any_chunk_boundary_read_back_exactly(tmp_path: Path, monkeypatch, chunk: int, indent) -> None:
    monkeypatch.setattr(_JsonArrayReader, "CHUNK", chunk)
    assert read(tmp_path, json.dumps(ITEMS, indent=indent)) == ITEMS
    assert read(tmp_path, " [ ] \n") == []


@pytest.mark.parametrize(("text", "reason"), [
    ("[1,2", "expected ',' or ']' after an item, found the end of the file"),
    ("[1,2,]", "expected an item after ','"),
    ("[1 2]", "expected ',' or ']' after an item, found '2'"),
    ("[NaN]", "NaN is not JSON"),
    ("[1] x", "text after the closing ']' ('x')"),
    ("[1.]", "expected ',' or ']' after an item, found '.'"),
    ('[{"a":1},\n{"a":\n', "line 3, column 1: Expecting value"),
])
def test_malformed_arrays_name_the_problem(tmp_path: Path, monkeypatch, text: str, reason: str) -> None:
    monkeypatch.setattr(_JsonArrayReader, "CHUNK", 3)
    with pytest.raises(FormatError, match="log.json: truncated or malformed JSON") as err:
        read(tmp_path, text)
    assert reason in str(err.value)
