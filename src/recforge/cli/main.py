"""The ``recforge`` command: global options, command registration, one-line errors.

Every command module under :mod:`recforge.cli` (listed in :mod:`recforge.cli.commands`) exposes
``register(app)``; this module wires them up. Command modules import only
:class:`~recforge.cli.state.State` from the CLI, never this module, so imports run one way.

Errors print as one line on stderr (``recforge: error: ...``) with exit code 2; ``--debug`` adds
the traceback.
"""

from __future__ import annotations

import re
import sys
import traceback
from pathlib import Path
from typing import Any

import typer

from recforge.cli import commands
from recforge.cli.state import State
from recforge.config import load_config

__all__ = ["app", "main"]

app = typer.Typer(
    name="recforge",
    help="recforge: events in, recommendations out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_debug = False
#: How NumPy reports a write the disk could not take (it gives no errno).
_SHORT_WRITE = re.compile(r"^\d+ requested and \d+ written$")

#: Typer bundles its own click; its usage errors (bad option, missing argument) derive from the
#: class that Typer exports ``BadParameter`` from.
_UsageError: Any = typer.BadParameter.__mro__[1]


@app.callback()
def _global(
    ctx: typer.Context,
    home: Path | None = typer.Option(
        None,
        "--home",
        help="recforge home (event store, models). Env RECFORGE_HOME; default ./recforge_data.",
    ),
    config: Path | None = typer.Option(
        None, "--config", help="TOML config file (see recforge.example.toml)."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
) -> None:
    global _debug
    _debug = debug
    overrides = {"home": str(home)} if home is not None else None
    ctx.obj = State(config=load_config(config, overrides=overrides), debug=debug)


for _module in commands.MODULES:
    _module.register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``recforge`` script; returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        result = app(args=args, prog_name="recforge", standalone_mode=False)
        return int(result) if isinstance(result, int) else 0
    except typer.Exit as stop:
        return int(stop.exit_code)
    except typer.Abort:
        print("recforge: aborted", file=sys.stderr)
        return 130
    except _UsageError as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # the help is the answer (as Typer does)
            error.show()
            return 2
        print(f"recforge: error: {error.format_message()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("recforge: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # every other failure: one line, traceback only on --debug
        if debug or _debug:
            traceback.print_exc()
        message = " ".join(str(error).split()) or type(error).__name__
        if isinstance(error, OSError) and _SHORT_WRITE.match(message):  # numpy's words for a full disk
            message = f"a write was cut short ({message}): No space left on device, or over a quota"
        print(f"recforge: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
