"""The ``backdrop`` command: a thin layer over the library; one module per subcommand."""

from __future__ import annotations

import logging

import click

from worker.cli.keys import keys
from worker.cli.replace import replace
from worker.cli.serve import serve
from worker.cli.weights import weights

DISTRIBUTION = "backdrop"
VERBOSE_FLAGS = ("-v", "--verbose")
VERBOSE_HELP = "Log what happens."


def configure_logging(verbose: bool) -> None:
    """Warnings only, or everything from INFO up with ``verbose``; may be called again to turn it on."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if verbose:
        logging.getLogger().setLevel(logging.INFO)


def _verbose_given(_ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        configure_logging(True)


def add_verbose_option(command: click.Command) -> None:
    """Accept ``-v/--verbose`` after ``command`` (and each of its subcommands), as before it."""
    if not any(set(VERBOSE_FLAGS) & set(param.opts) for param in command.params):
        command.params.append(
            click.Option(
                list(VERBOSE_FLAGS), is_flag=True, expose_value=False, callback=_verbose_given, help=VERBOSE_HELP
            )
        )
    if isinstance(command, click.Group):
        for subcommand in command.commands.values():
            add_verbose_option(subcommand)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name=DISTRIBUTION, prog_name=DISTRIBUTION, message="%(prog)s %(version)s")
@click.option(*VERBOSE_FLAGS, is_flag=True, help=VERBOSE_HELP)
def main(verbose: bool) -> None:
    """Backdrop: replace the background of portrait and ID photos."""
    configure_logging(verbose)


for _command in (replace, weights, serve, keys):
    add_verbose_option(_command)
    main.add_command(_command)
