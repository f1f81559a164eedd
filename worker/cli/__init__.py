"""The ``backdrop`` command: a thin layer over the library; one module per subcommand."""

from __future__ import annotations

import logging

import click

from worker.cli.keys import keys
from worker.cli.replace import replace
from worker.cli.serve import serve
from worker.cli.weights import weights

DISTRIBUTION = "backdrop"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name=DISTRIBUTION, prog_name=DISTRIBUTION, message="%(prog)s %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
def main(verbose: bool) -> None:
    """Backdrop: replace the background of portrait and ID photos."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


main.add_command(replace)
main.add_command(weights)
main.add_command(serve)
main.add_command(keys)
