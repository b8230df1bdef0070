"""The ``dldebug`` typer app and its entry point.

Exit statuses: 0 ok; 1 ``--fail-on`` matched a finding; 2 bad input or usage
(one clear message, never a traceback); 3 an internal error (a bug in dldebug:
set ``DLDEBUG_DEBUG=1`` for the traceback); 130 interrupted.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import click
import typer
from rich.text import Text

from dldebug import __version__
from dldebug.cli.common import err_console
from dldebug.cli.registry import COMMANDS, CommandSpec
from dldebug.errors import DldebugError, MissingDependencyError


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dldebug {__version__}")
        raise typer.Exit(0)


def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Find, explain and fix the silent bugs of deep learning."""


def _missing_command(spec: CommandSpec, module: str) -> Any:
    def command(args: list[str] = typer.Argument(None, hidden=True)) -> None:
        raise MissingDependencyError(module, spec.extra or module, f"dldebug {spec.name}")

    command.__doc__ = f"{spec.help} [needs: pip install 'dldebug[{spec.extra or module}]']"
    return command


def build_app(commands: Sequence[CommandSpec] = COMMANDS) -> typer.Typer:
    """The typer app with every command of ``commands`` registered.

    A command whose required module is missing is still listed; running it
    says which extra to install.
    """
    application = typer.Typer(
        name="dldebug",
        help="Find, explain and fix the silent bugs of deep learning.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    application.callback()(_root)
    for spec in commands:
        missing = spec.missing()
        if missing is not None:
            stub = _missing_command(spec, missing)
            application.command(spec.name, help=stub.__doc__, short_help=stub.__doc__,
                                context_settings={"ignore_unknown_options": True, "allow_extra_args": True})(stub)
            continue
        module = importlib.import_module(spec.module)
        application.command(spec.name, help=spec.help)(module.command)
    return application


app = build_app()


# typer >= 0.20 vendors click and raises its own classes; older typer raises click's.
_EXIT: tuple[type[Any], ...] = (typer.Exit, click.exceptions.Exit)
_USAGE: tuple[type[Any], ...] = tuple({getattr(typer, "TyperException", click.ClickException), click.ClickException})
_ABORT: tuple[type[Any], ...] = (typer.Abort, click.exceptions.Abort)


#: Errors of the file system around the user's paths, not of dldebug: bad input (exit 2).
_ENVIRONMENT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.ENOSPC,
                                 errno.EROFS, errno.EDQUOT, errno.ENAMETOOLONG, errno.ELOOP, errno.EMFILE})


def _report_unexpected(exc: Exception) -> int:
    """Print an error no dldebug check anticipated; 2 when the file system caused it, else 3 (a dldebug bug)."""
    if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS:
        where = f"{exc.filename}: " if exc.filename else ""
        err_console.print(Text.assemble(("error: ", "bold red"), f"{where}{exc.strerror or exc}. Check the path, "
                                        "its permissions and the free disk space."), highlight=False, soft_wrap=True)
        return 2
    err_console.print(Text.assemble(("internal error: ", "bold red"), f"{type(exc).__name__}: {exc}\n"
                      "This is a bug in dldebug; rerun with DLDEBUG_DEBUG=1 for the traceback and report it."),
                      highlight=False, soft_wrap=True)
    return 3


def main(argv: Sequence[str] | None = None, *, application: typer.Typer | None = None) -> int:
    """Run the CLI; returns (and, as a console script, exits with) the status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = (application or app)(args=args, prog_name="dldebug", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except _EXIT as exc:
        code = exc.exit_code
    except _USAGE as exc:  # usage errors: bad option, missing argument
        if hasattr(exc, "show"):
            exc.show(file=sys.stderr)
        else:
            err_console.print(Text.assemble(("error: ", "bold red"), str(exc)))
        code = 2
    except _ABORT:
        err_console.print("aborted")
        code = 130
    except KeyboardInterrupt:
        err_console.print("interrupted")
        code = 130
    except DldebugError as exc:
        err_console.print(Text.assemble(("error: ", "bold red"), str(exc)), highlight=False, soft_wrap=True)
        code = 2
    except Exception as exc:
        if os.environ.get("DLDEBUG_DEBUG"):
            raise
        code = _report_unexpected(exc)
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    main()
