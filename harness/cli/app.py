"""The `qresafe-bench` command line: thin commands that parse, call the library, and print.

Results go to stdout, diagnostics and progress to stderr. Known errors print one line and exit 1;
bad usage exits 2 (Typer); set QRESAFE_DEBUG=1 for the full traceback.
"""

from __future__ import annotations

import os
import sys

import typer

from ..core import interrupt
from . import audit_cmd, data_cmd, eval_cmd, leaderboard_cmd, models_cmd, patch_cmd, quantize_cmd, sweep_cmd, zoo_cmd

app = typer.Typer(
    name="qresafe-bench",
    help="How much does quantization break an LLM's safety, and can the Q-resafe patch restore it?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
@app.callback()
def options(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the libraries' own progress bars and "
                                                                       "warnings (hidden by default).")) -> None:
    if not verbose:
        from ..core.quiet import quiet_third_party

        quiet_third_party()


app.command("eval")(eval_cmd.eval_command)
app.command("quantize")(quantize_cmd.quantize_command)
app.command("methods")(quantize_cmd.methods_command)
app.command("patch")(patch_cmd.patch_command)
app.command("sweep")(sweep_cmd.sweep_command)
app.command("leaderboard")(leaderboard_cmd.leaderboard_command)
app.command("gate")(leaderboard_cmd.gate_command)
app.command("export")(leaderboard_cmd.export_command)
app.command("audit-calib")(audit_cmd.audit_calib_command)
app.command("models")(models_cmd.models_command)
app.command("data")(data_cmd.data_command)
app.add_typer(zoo_cmd.app, name="zoo")


INTERRUPTED = "interrupted: finished generations are stored; run the same command to resume"


def main() -> None:
    interrupt.install()
    try:
        code = app(standalone_mode=False)
        # Without standalone mode, Click returns (does not raise) a command's `typer.Exit(code)`.
        if isinstance(code, int) and code:
            if code == 130:  # Typer turns ^C inside a command into Exit(130), which Click returns here
                print(INTERRUPTED, file=sys.stderr)
            sys.exit(code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into exit codes
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            # Click's own errors (Typer vendors Click, so match the API, not the class): usage -> 2.
            exc.show()
            sys.exit(exc.exit_code)
        if os.environ.get("QRESAFE_DEBUG"):
            raise
        from ..core.errors import QresafeError  # lazily: keep --help instant

        if isinstance(exc, QresafeError):
            print(f"error: {_unwrap(exc)}", file=sys.stderr)
        else:
            print(f"error: {exc.__class__.__name__}: {exc} (QRESAFE_DEBUG=1 for the traceback)", file=sys.stderr)
        sys.exit(1)


def _unwrap(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__


if __name__ == "__main__":
    main()
