"""Self-contained HTML reports: plotly figures plus a table of key numbers, and the numbers as JSON.

Chart functions are pure (small inputs in, a plotly Figure out) so the dashboard can reuse them.
`render_html` is byte-deterministic for the same inputs: figure divs get fixed ids and plotly.js is
inlined once, so a report opens offline and two runs of the same command give the same bytes.
"""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio


@dataclass
class Section:
    """One part of a report: a heading, key numbers, figures and notes."""

    title: str
    numbers: Mapping = field(default_factory=dict)
    figures: list[go.Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def cdf_figure(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str, x_title: str,
               log_x: bool = False) -> go.Figure:
    """Empirical CDFs: label -> (values, cumulative probabilities)."""
    fig = go.Figure()
    for label, (x, p) in curves.items():
        fig.add_trace(go.Scatter(x=list(x), y=list(p), mode="lines", name=str(label)))
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title="CDF", template="plotly_white",
                      xaxis_type="log" if log_x else "linear", yaxis_range=[0, 1])
    return fig


def series_figure(series: Mapping[str, tuple[Sequence, Sequence[float]]], title: str, x_title: str,
                  y_title: str, kind: str = "lines") -> go.Figure:
    """Series over time (or any x): label -> (x, y). kind: 'lines' or 'bars'."""
    fig = go.Figure()
    for label, (x, y) in series.items():
        trace = go.Bar if kind == "bars" else go.Scatter
        extra = {} if kind == "bars" else {"mode": "lines"}
        fig.add_trace(trace(x=list(x), y=list(y), name=str(label), **extra))
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, template="plotly_white",
                      barmode="group")
    return fig


def bar_figure(labels: Sequence[str], values: Mapping[str, Sequence[float]], title: str, y_title: str) -> go.Figure:
    """Grouped bars: one group per label, one bar per series in `values`."""
    return series_figure({name: (list(labels), v) for name, v in values.items()}, title, "", y_title, kind="bars")


def flatten(numbers: Mapping, prefix: str = "") -> dict[str, object]:
    """Nested dicts to 'a.b.c' keys (lists of scalars are kept as one value)."""
    out: dict[str, object] = {}
    for key, value in numbers.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value[:12]) + (" …" if len(value) > 12 else "")
    return "n/a" if value is None else str(value)


_CSS = """body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0 1rem}td,th{border-bottom:1px solid #ddd;
padding:.2rem .8rem;text-align:left}td.v{text-align:right;font-variant-numeric:tabular-nums}
h2{margin-top:2.5rem;border-bottom:2px solid #444}.note{color:#555;font-size:.9rem}"""


def render_html(title: str, sections: Sequence[Section], meta: Mapping[str, object] | None = None) -> str:
    """The whole report as one HTML string (plotly.js inlined once; deterministic div ids)."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    if meta:
        parts.append("<p class='note'>" + " · ".join(f"{html.escape(str(k))}: {html.escape(_fmt(v))}"
                                                    for k, v in meta.items()) + "</p>")
    n_fig = 0
    for s_idx, section in enumerate(sections):
        parts.append(f"<h2 id='s{s_idx}'>{html.escape(section.title)}</h2>")
        for note in section.notes:
            parts.append(f"<p class='note'>{html.escape(note)}</p>")
        flat = flatten(section.numbers)
        if flat:
            rows = "".join(f"<tr><td>{html.escape(k)}</td><td class='v'>{html.escape(_fmt(v))}</td></tr>"
                           for k, v in flat.items())
            parts.append(f"<table><tr><th>quantity</th><th>value</th></tr>{rows}</table>")
        for fig in section.figures:
            parts.append(pio.to_html(fig, full_html=False, include_plotlyjs="inline" if n_fig == 0 else False,
                                     div_id=f"fig{n_fig}", config={"displaylogo": False}))
            n_fig += 1
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out_dir: str | Path, name: str, html_text: str, numbers: Mapping) -> tuple[Path, Path]:
    """Write `<name>.html` and `<name>.json` atomically into `out_dir`; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / f"{name}.html", out / f"{name}.json")
    payloads = (html_text, json.dumps(numbers, indent=2, sort_keys=True, default=_json_default) + "\n")
    for path, text in zip(paths, payloads):
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; a report is meant to be shared
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return paths


def _json_default(obj: object) -> object:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")
