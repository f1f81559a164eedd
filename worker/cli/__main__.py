"""``python -m worker.cli``: the ``backdrop`` command."""

from worker.cli import main

main()
