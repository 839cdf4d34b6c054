"""Known failures become one line on stderr and a non-zero exit; tracebacks only with HOOD_DEBUG=1.

HoodError (anything the user can fix) exits 2; an operating-system error or running out of memory exits 1,
also as one line. Any other exception is a bug in hood and keeps its traceback.

Ctrl-C (SIGINT) exits 130 and SIGTERM exits 143, after telling how to resume: training jobs checkpoint
at every epoch end, so the last completed epoch is already on disk.
"""

from __future__ import annotations

import functools
import os
import re
import signal
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from hood.errors import HoodError
from hood.locks import command_scope

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so ``finally`` blocks and atomic writes unwind cleanly."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def debug() -> bool:
    return os.environ.get("HOOD_DEBUG", "") not in ("", "0", "false")


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
WORD_LIMIT = 200  # characters of one word (a path, a value) an error line shows
LINE_LIMIT = 2000


def printable(text: str) -> str:
    """``text`` with control characters escaped as ``--json`` writes them (``\\n``, ``\\x1b``): a file name must not
    split a line or send the terminal an escape sequence."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def one_line(message: str) -> str:
    """``message`` as the one short line an error is: control characters escaped (a newline or a terminal escape
    in a file name must not split the line or reach the terminal raw), an overlong word or line cut, with its
    length said."""
    text = printable(message)
    text = re.sub(rf"\S{{{WORD_LIMIT + 1},}}", lambda m: f"{m.group()[:WORD_LIMIT // 2]}... ({len(m.group()):,} characters)", text)
    return text if len(text) <= LINE_LIMIT else f"{text[:LINE_LIMIT]}... ({len(text):,} characters)"


def fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(one_line(message))}", markup=True, highlight=False)
    return typer.Exit(code)


def handle_errors(resume_hint: Callable[[], str | None] | None = None) -> Callable[[F], F]:
    """Decorate a command: HoodError -> one line; interrupts -> resume hint and 130/143."""

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            previous = signal.getsignal(signal.SIGTERM)
            try:
                signal.signal(signal.SIGTERM, _on_sigterm)
            except ValueError:  # not the main thread (e.g. under a test runner thread)
                previous = None
            try:
                with command_scope():  # the run directories it writes stay locked until it ends
                    return fn(*args, **kwargs)
            except HoodError as err:
                if debug():
                    raise
                raise fail(str(err), err.exit_code) from None
            except MemoryError:
                if debug():
                    raise
                raise fail("out of memory; lower --batch-size (or evaluate.batch_size), or use fewer images", 1) from None
            except RuntimeError as err:
                if debug() or type(err).__name__ != "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
                    raise
                raise fail("out of GPU memory; lower --batch-size (or evaluate.batch_size)", 1) from None
            except OSError as err:
                # the machine, not hood: a disk error, a file removed under a running command, a full /tmp
                if debug():
                    raise
                where = f" ({err.filename})" if err.filename else ""
                raise fail(f"{err.strerror or err}{where}; run with HOOD_DEBUG=1 for the traceback", 1) from None
            except KeyboardInterrupt as err:
                hint = resume_hint() if resume_hint else None
                msg = "terminated" if isinstance(err, Terminated) else "interrupted"
                err_console.print(f"[yellow]{msg}[/]" + (f"; {hint}" if hint else ""))
                raise typer.Exit(143 if isinstance(err, Terminated) else 130) from None
            finally:
                if previous is not None:
                    signal.signal(signal.SIGTERM, previous)

        return wrapper  # type: ignore[return-value]

    return deco
