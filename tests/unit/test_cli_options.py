"""The job-option flags of ``backdrop replace`` are ``JobOptions``' command-line options: the same names,
short flags, defaults, types and rules, for the local and the ``--server`` mode alike."""

from __future__ import annotations

import enum
import types
from typing import Annotated, Any, Union, get_args, get_origin

import annotated_types
import click
import pytest
from click.testing import CliRunner
from pydantic import Field

from common.options import Exposure, JobOptions, OutputFormat, OutputKind, Surface, exposure
from common.settings import Settings
from worker.cli.option_flags import CommaList, defers_to_setting, job_option_flags
from worker.cli.remote import server_fields
from worker.cli.replace import chosen_options, local_options, replace

CLI_NAMES = sorted(JobOptions.names(Surface.CLI))
# The flags of `backdrop replace` that are not options of a job.
COMMAND_FLAGS = {"inputs", "output", "cutout", "matte", "server", "api_key", "keep_on_server"}


def _params(command: click.Command) -> dict[str, click.Parameter]:
    return {param.name: param for param in command.params if param.name}


def _parsed(*args: str) -> dict[str, Any]:
    """What ``backdrop replace photo.jpg ARGS`` passes to the command."""
    with replace.make_context("replace", ["photo.jpg", *args]) as ctx:
        return dict(ctx.params)


def _job_values(params: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in params.items() if name not in COMMAND_FLAGS}


def _chosen(*args: str) -> dict[str, Any]:
    """The options ``backdrop replace photo.jpg ARGS`` asks for, ``--cutout`` and ``--matte`` included."""
    params = _parsed(*args)
    return chosen_options(_job_values(params), cutout=params["cutout"], matte=params["matte"])


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        (rest,) = [arg for arg in get_args(annotation) if arg is not type(None)]
        return rest
    return annotation


def test_the_job_flags_are_exactly_the_cli_options() -> None:
    assert set(_params(replace)) - COMMAND_FLAGS == JobOptions.names(Surface.CLI)
    assert {"webhook_url", "webhook_events"}.isdisjoint(_params(replace))


@pytest.mark.parametrize("name", CLI_NAMES)
def test_each_flag_has_the_fields_name_short_flag_and_description(name: str) -> None:
    field = JobOptions.model_fields[name]
    param = _params(replace)[name]
    assert isinstance(param, click.Option)
    assert f"--{name.replace('_', '-')}" in param.opts
    short = exposure(field).short_flag
    if short is not None:
        assert short in param.opts
    assert field.description and param.help and field.description in param.help


@pytest.mark.parametrize("name", CLI_NAMES)
def test_each_flag_has_the_type_of_its_field(name: str) -> None:
    field = JobOptions.model_fields[name]
    param = _params(replace)[name]
    assert isinstance(param, click.Option)
    annotation = _without_none(field.annotation)
    if annotation is bool:
        assert param.is_flag and param.secondary_opts == [f"--no-{name.replace('_', '-')}"]
    elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        assert isinstance(param.type, click.Choice)
        assert list(param.type.choices) == [member.value for member in annotation]
    elif annotation is int:
        bounds = {type(item): item for item in field.metadata}
        assert isinstance(param.type, click.IntRange)
        assert param.type.min == bounds[annotated_types.Ge].ge
        assert param.type.max == bounds[annotated_types.Le].le
    elif get_origin(annotation) is list:
        (item,) = get_args(annotation)
        assert isinstance(param.type, CommaList) and isinstance(param.type.item, click.Choice)
        assert list(param.type.item.choices) == [member.value for member in item]
    else:
        assert annotation is str and param.type is click.STRING


def test_the_types_of_todays_flags() -> None:
    params = _params(replace)
    assert params["background"].opts == ["-b", "--background"] and params["background"].type is click.STRING
    assert params["format"].opts == ["-f", "--format"]
    assert list(params["format"].type.choices) == ["jpeg", "png", "webp"]
    assert params["quality"].opts == ["-q", "--quality"]
    assert (params["quality"].type.min, params["quality"].type.max) == (1, 100)
    assert params["decontaminate"].opts == ["--decontaminate"]
    assert params["decontaminate"].secondary_opts == ["--no-decontaminate"]


def test_the_defaults_are_the_fields_defaults() -> None:
    values = _job_values(_parsed())
    for name in CLI_NAMES:
        if defers_to_setting(name):
            assert values[name] is None  # unset: the setting decides
        else:
            assert getattr(JobOptions(**{name: values[name]}), name) == JobOptions.model_fields[name].default
    assert JobOptions(**{name: value for name, value in values.items() if value is not None}) == JobOptions()


@pytest.mark.parametrize("decontaminate", [True, False])
def test_an_unset_option_that_is_a_setting_takes_the_setting(decontaminate: bool) -> None:
    settings = Settings(decontaminate=decontaminate)
    options, _ = local_options(_chosen(), settings)
    assert options == JobOptions(decontaminate=decontaminate)
    given, _ = local_options(_chosen("--no-decontaminate"), settings)
    assert given.decontaminate is False


def test_values_are_parsed_as_the_field_parses_them() -> None:
    assert _parsed("-f", "jpg")["format"] == "jpeg"
    options = JobOptions(**_chosen("-f", "jpg", "-q", "7", "--outputs", "matte, cutout", "-b", "#fff"))
    assert options.format is OutputFormat.JPEG and options.quality == 7 and options.background == "#fff"
    assert options.outputs == [OutputKind.CUTOUT, OutputKind.MATTE]


def test_cutout_and_matte_add_to_the_outputs() -> None:
    assert JobOptions(**_chosen("--matte", "--cutout")).outputs == list(OutputKind)
    assert JobOptions(**_chosen("--outputs", "matte", "--cutout")).outputs == [OutputKind.CUTOUT, OutputKind.MATTE]


@pytest.mark.parametrize(
    "args",
    [["-q", "0"], ["-q", "101"], ["-q", "high"], ["-f", "gif"], ["--outputs", "thumbnail"], ["-b", "purple"]],
)
def test_values_the_field_refuses_are_usage_errors(args: list[str], tmp_path: Any) -> None:
    result = CliRunner().invoke(replace, [str(tmp_path / "photo.jpg"), *args])
    assert result.exit_code == 2, result.output
    assert args[1] in result.stderr


def test_the_server_gets_the_options_given_as_form_text() -> None:
    assert server_fields(_chosen("--matte")) == {"background": "blue", "quality": 92, "outputs": "composite,matte"}
    assert server_fields(_chosen("-f", "JPG", "--no-decontaminate", "-b", "red", "--cutout")) == {
        "background": "red",
        "format": "jpeg",
        "quality": 92,
        "outputs": "composite,cutout",
        "decontaminate": False,
    }


class _Extended(JobOptions):
    """``JobOptions`` with one more option, as a future field would be declared."""

    sharpen: Annotated[int, Field(ge=0, le=5, description="how much to sharpen"), Exposure(short_flag="-s")] = 0
    note: Annotated[str, Field(description="server side only"), Exposure(surfaces=frozenset({Surface.JOB}))] = ""


def test_a_new_option_of_the_model_is_a_new_flag() -> None:
    seen: dict[str, Any] = {}

    @click.command()
    @job_option_flags(model=_Extended)
    def command(**values: Any) -> None:
        seen.update(values)

    assert set(_params(command)) == _Extended.names(Surface.CLI) == JobOptions.names(Surface.CLI) | {"sharpen"}
    result = CliRunner().invoke(command, ["-s", "3"])
    assert result.exit_code == 0, result.output
    assert seen["sharpen"] == 3 and _Extended(**{k: v for k, v in seen.items() if v is not None}).sharpen == 3
    assert CliRunner().invoke(command, ["--sharpen", "6"]).exit_code == 2
    assert "how much to sharpen" in CliRunner().invoke(command, ["--help"]).output
