"""``python -m tracelab`` is the ``tracelab`` command."""

from tracelab.cli import main

if __name__ == "__main__":
    main()
