"""Entry point of the ``rssn`` command.

Every module of this package that defines ``COMMANDS`` (a list of click commands)
is registered here, so a command family lives in one file of its own. Command
modules import heavy libraries (torch, ultralytics, dask) inside their functions,
so ``rssn --help`` stays fast.
"""
from __future__ import annotations

import importlib
import pkgutil

import click

import rssn


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(rssn.__version__, prog_name="rssn")
def main() -> None:
    """rssn: realistic training data for image matting, and the GFM model trained on it.

    \b
    Pipeline:  photos --build-bg--> backgrounds
               matting set --prepare--> foregrounds + denoised copies
               --compose--> webdataset shards --train--> checkpoint
               --eval/predict--> metrics and alpha mattes;  gap scores composites vs real.

    Run `rssn COMMAND --help` for the options of each command.
    """


def _register() -> None:
    import cli

    for info in sorted(pkgutil.iter_modules(cli.__path__), key=lambda m: m.name):
        if info.name in ("main", "common") or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"cli.{info.name}")
        for command in getattr(module, "COMMANDS", ()):
            main.add_command(command)


_register()

if __name__ == "__main__":  # pragma: no cover
    main()
