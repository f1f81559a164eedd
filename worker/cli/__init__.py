"""The ``backdrop`` command: a thin layer over the library; one module per subcommand."""

from __future__ import annotations

import copy
import logging

import click

from worker.cli.idphoto import idphoto
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


def with_verbose_option(command: click.Command) -> click.Command:
    """A copy of ``command`` (and of its subcommands) that also accepts ``-v/--verbose``; the
    original objects, which other entry points share, are left as they are."""
    command = copy.copy(command)
    if not any(set(VERBOSE_FLAGS) & set(param.opts) for param in command.params):
        verbose = click.Option(
            list(VERBOSE_FLAGS), is_flag=True, expose_value=False, callback=_verbose_given, help=VERBOSE_HELP
        )
        command.params = [*command.params, verbose]
    if isinstance(command, click.Group):
        command.commands = {name: with_verbose_option(sub) for name, sub in command.commands.items()}
    return command


class BackdropGroup(click.Group):
    """The top-level group: ``-v`` is accepted before the subcommand and after it, at any depth."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        return name, with_verbose_option(command) if command is not None else None, rest


@click.group(cls=BackdropGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name=DISTRIBUTION, prog_name=DISTRIBUTION, message="%(prog)s %(version)s")
@click.option(*VERBOSE_FLAGS, is_flag=True, help=VERBOSE_HELP)
def main(verbose: bool) -> None:
    """Backdrop: replace the background of portrait and ID photos."""
    configure_logging(verbose)


main.add_command(replace)
main.add_command(weights)
main.add_command(serve)
main.add_command(keys)
main.add_command(idphoto)
