"""Options and error handling shared by the command modules."""
from __future__ import annotations

import functools
from typing import Any, Callable

import click


def executor_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--workers`` and ``--scheduler``: where the work units run."""
    f = click.option(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="Dask scheduler address (tcp://host:port); runs the work units on that cluster.",
    )(f)
    f = click.option(
        "--workers", "-j", type=click.IntRange(min=1), default=1, show_default=True,
        help="Local worker processes (ignored with --scheduler).",
    )(f)
    return f


def seed_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--seed", type=int, default=0, show_default=True,
        help="Run seed: every random choice derives from (seed, sample id).",
    )(f)


def friendly_errors(f: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the library's expected errors (bad images, layouts, paths, values, damaged
    tar files) into a one-line message and exit code 1."""
    import tarfile

    from rssn.io import ImageError
    from rssn.layouts import LayoutError
    from rssn.records import UnsafePathError

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except (ImageError, LayoutError, UnsafePathError, FileNotFoundError, ValueError, tarfile.TarError) as e:
            raise click.ClickException(str(e)) from None

    return wrapper
