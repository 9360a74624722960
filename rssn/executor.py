"""Run independent work units locally or on a Dask cluster.

A work unit is any picklable value (typically: the description of one output
shard, or one image). :func:`run_units` applies a top-level function to each
unit and returns one :class:`UnitResult` per unit, in the order of ``units``,
whatever the backend:

- ``workers=1`` and no scheduler: in this process, one after the other;
- ``workers=N``: N local processes (joblib's loky backend);
- ``scheduler="tcp://host:port"`` (or a ``distributed.Client``): a Dask cluster.

An exception inside a unit does not stop the run: it is captured with its
traceback in that unit's result. Units must derive any randomness from their own
description (see :func:`rssn.seeding.generator`), never from worker state, so
results do not depend on the backend or the number of workers.
"""
from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

_THREADS_LIMITED = False


@dataclass
class UnitResult:
    """The outcome of one work unit."""

    index: int
    ok: bool
    value: Any = None
    error: str | None = None
    traceback: str | None = None


def limit_threads(n: int = 1) -> None:
    """Stop libraries from starting one thread per core inside each worker.

    OpenCV and torch default to all cores; with N worker processes that means
    N x cores threads fighting for the same cores.
    """
    global _THREADS_LIMITED
    if _THREADS_LIMITED:
        return
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    try:
        import cv2

        cv2.setNumThreads(n)
    except ImportError:  # pragma: no cover
        pass
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)
    _THREADS_LIMITED = True


def _run_one(fn: Callable[[Any], Any], index: int, unit: Any, in_worker: bool) -> UnitResult:
    if in_worker:
        limit_threads(1)
    try:
        return UnitResult(index=index, ok=True, value=fn(unit))
    except Exception as e:  # noqa: BLE001 - every failure is recorded per unit
        return UnitResult(
            index=index, ok=False, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()
        )


def progress_enabled() -> bool:
    return os.environ.get("RSSN_PROGRESS", "1") != "0"


def run_units(
    fn: Callable[[Any], Any],
    units: Sequence[Any],
    *,
    workers: int = 1,
    scheduler: Any = None,
    desc: str = "units",
    progress: bool | None = None,
) -> list[UnitResult]:
    """Apply ``fn`` to every unit; return results in the order of ``units``.

    Parameters
    ----------
    fn:
        A module-level function (it is pickled for workers).
    units:
        The work units.
    workers:
        Local worker processes (ignored when ``scheduler`` is given).
    scheduler:
        ``None``, a Dask scheduler address (``tcp://host:port``) or a
        ``distributed.Client``.
    desc:
        Label for the progress bar.
    """
    units = list(units)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    show = progress_enabled() if progress is None else progress
    bar = tqdm(total=len(units), desc=desc, unit="unit", disable=not show or not units, dynamic_ncols=True)
    results: list[UnitResult | None] = [None] * len(units)
    try:
        if scheduler is not None:
            _run_dask(fn, units, scheduler, results, bar)
        elif workers == 1 or len(units) <= 1:
            for i, unit in enumerate(units):
                results[i] = _run_one(fn, i, unit, in_worker=False)
                bar.update(1)
        else:
            from joblib import Parallel, delayed

            par = Parallel(n_jobs=min(workers, len(units)), backend="loky", return_as="generator_unordered")
            for res in par(delayed(_run_one)(fn, i, u, True) for i, u in enumerate(units)):
                results[res.index] = res
                bar.update(1)
    finally:
        bar.close()
    return [r for r in results if r is not None]


def _run_dask(fn, units, scheduler, results, bar) -> None:
    from distributed import Client, as_completed

    own_client = not isinstance(scheduler, Client)
    client = Client(scheduler) if own_client else scheduler
    try:
        futures = client.map(
            _run_one, [fn] * len(units), range(len(units)), units, [True] * len(units), pure=False
        )
        for fut in as_completed(futures):
            try:
                res = fut.result()
            except Exception as e:  # a worker died: the unit failed, the run goes on
                idx = futures.index(fut)
                res = UnitResult(index=idx, ok=False, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
            results[res.index] = res
            bar.update(1)
    finally:
        if own_client:
            client.close()


def failures(results: Sequence[UnitResult]) -> list[UnitResult]:
    return [r for r in results if not r.ok]
