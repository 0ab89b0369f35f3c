"""Rebuild ``analysis/data/builtin_request_model.json``: the built-in request workload model.

``python -m analysis.builtin_model [--data ROOT]`` fits :class:`~analysis.workload_model.RequestWorkloadModel`
(gamma arrivals, 60 s windows) on the ingested Azure 2023 conversation trace, coarsens its lengths
(:meth:`~analysis.workload_model.RequestWorkloadModel.coarsened`), checks the coarsened model against
the trace, prints the comparison and writes the JSON (sorted keys: the same trace gives the same bytes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from analysis.catalog import open_catalog
from analysis.workload_model import BUILTIN, RequestWorkloadModel, compare, trace_workload

OUT = Path(__file__).resolve().parent / "data" / "builtin_request_model.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="data root with azure_llm_2023 ingested")
    args = ap.parse_args(argv)
    con = open_catalog(args.data)
    try:
        real = trace_workload(con, BUILTIN)
    finally:
        con.close()
    model = RequestWorkloadModel().fit(real.arrival_s, real.prompt_tokens, real.output_tokens, trace=BUILTIN).coarsened()
    print(json.dumps(compare(real, model.generate(seed=0)), indent=1, default=str))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(model.to_dict(), sort_keys=True, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes, {len(model.pair_counts_):,} length bins)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
