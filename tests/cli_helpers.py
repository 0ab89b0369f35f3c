"""Running the ``tracelab replay`` command line in-process, and reading rich's console output."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from tracelab.cli import app


def replay(*args: str):
    """``tracelab replay ARGS`` through typer's CliRunner; never a traceback on the console."""
    result = CliRunner().invoke(app, ["replay", *args])
    assert "Traceback" not in result.output, result.output
    return result


def flat(text: str) -> str:
    """Console text without rich's panel borders and line wrapping."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", text).split())
