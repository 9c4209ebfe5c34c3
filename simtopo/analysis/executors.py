"""Running a sweep: resume from the log, evaluate the rest in parallel, write the table.

Executors: ``serial`` (this process), ``local`` (a pool of local processes, the default) and
``dask`` (an existing dask.distributed cluster, ``pip install 'simtopo[dask]'``). All give
the same records: a point's result depends only on its inputs. Points are ordered by what
they share (topology, model and workload, then the plan, a P2P plan next to its host-routed
twin), and local processes get them in chunks of such neighbours, so that a process's caches
of parsed files, pass graphs, layouts and collective memo (:func:`simtopo.sim.setup.memo_for`)
serve them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..io.atomic import write_atomic
from ..io.paths import child_path, display_path
from ..results.parallel import worker_init
from ..spec.experiment import Experiment, Variant, load_experiment
from ..version import __version__
from .sweep import (
    TABLE,
    Axis,
    Point,
    axes_from_block,
    evaluate,
    plan_points,
    record,
    resolve,
    table,
)
from .sweep_log import Log, read_log

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

EXECUTORS = ("local", "serial", "dask")

Task = tuple[Point, Variant, str, str, str]
"""A point, its variant, the fingerprint of its inputs, the digest of its topology, the
simulation mode."""
Progress = Callable[[int, int, Mapping[str, Any]], None]
"""Called after each point with (points done, points in the sweep, its record)."""


@dataclass
class SweepResult:
    """A finished (or resumed) sweep: its records in the sweep's order."""

    name: str
    folder: Path
    axes: list[Axis]
    points: list[Point]
    records: list[dict[str, Any]]
    computed: int
    reused: int
    figures: list[Path] = field(default_factory=list)

    def __repr__(self) -> str:
        """Where it wrote and what it did, as the CLI says it (a notebook shows this)."""
        return f"SweepResult({self.name}: {describe(self)})"

    @property
    def frame(self) -> pd.DataFrame:
        """One row per point: the axes, status, error and every metric."""
        return table(self.records, self.axes)

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The records of points that failed."""
        return [r for r in self.records if r["status"] != "ok"]

    def _ok(self) -> pd.DataFrame:
        frame = self.frame
        return frame[frame["status"] == "ok"].reset_index(drop=True)

    def plot_scaling(self) -> Figure:
        """Latency and throughput against the SoC count, per connection."""
        from .sweep_figures import scaling

        return scaling(self._ok())

    def plot_pareto(self) -> Figure:
        """Latency against throughput per SoC, with the Pareto front."""
        from .sweep_figures import pareto

        return pareto(self._ok())

    def plot_p2p_vs_host(self) -> Figure | None:
        """P2P-over-host speed-up per point pair (None without a plan.connection axis)."""
        from .sweep_figures import p2p_vs_host

        return p2p_vs_host(self._ok(), self.axes)

    def _repr_html_(self) -> str:
        return f"<p>{describe(self)}</p>" + self.frame.to_html(index=False, max_rows=60)


def _graph_key(task: Task) -> str:
    """What a point's pass graphs are built from (topology, model, workload)."""
    variant = task[1]
    return json.dumps([task[3], variant.model, variant.workload.model_dump(mode="json")],
                      sort_keys=True, default=str)


def _share_key(task: Task) -> tuple[str, str]:
    """Points that share pass graphs, then layouts (a P2P plan and its host-routed twin lay
    the model out alike), side by side."""
    plan = task[1].plan.model_dump(mode="json")
    connection = plan.pop("connection")
    return _graph_key(task), json.dumps([plan, connection, task[1].transfer], sort_keys=True,
                                        default=str)


def _chunks(tasks: Sequence[Task], jobs: int) -> list[list[Task]]:
    """Neighbours that share pass graphs, in chunks of at most :data:`CHUNK` (and few
    enough per chunk that every process gets several): a process then finds a graph and a
    layout once for the chunk, and answers it in one message."""
    size = max(1, min(CHUNK, len(tasks) // (8 * jobs)))
    out: list[list[Task]] = []
    last = None
    for task in tasks:
        key = _graph_key(task)
        if out and len(out[-1]) < size and key == last:
            out[-1].append(task)
        else:
            out.append([task])
        last = key
    return out


CHUNK = 16
"""Points per message to a local process, at most."""


class WorkerTraceback(Exception):
    """Where, in a worker process, the error raised with it came from."""


def _evaluate_all(tasks: Sequence[Task]) -> tuple[list[dict[str, Any]], Any]:
    """The chunk's records, and what stopped it (an error that is not the point's, a bug)
    with its traceback, or ``None``: the records before it are kept (logged, not redone)."""
    done = []
    try:
        for task in tasks:
            done.append(evaluate(*task))
    except Exception as exc:
        import traceback

        return done, (exc, traceback.format_exc())
    return done, None


def _serial(tasks: Sequence[Task]) -> Iterator[dict[str, Any]]:
    for task in tasks:
        yield evaluate(*task)


def _local(tasks: Sequence[Task], jobs: int) -> Iterator[dict[str, Any]]:
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pool = ProcessPoolExecutor(max_workers=jobs, initializer=worker_init)
    finished = False
    try:
        futures = [pool.submit(_evaluate_all, chunk) for chunk in _chunks(tasks, jobs)]
        for future in as_completed(futures):
            done, failure = future.result()
            yield from done
            if failure is not None:
                error, text = failure
                raise error from WorkerTraceback(text)
        finished = True
    finally:
        if not finished:  # interrupted: stop the points in flight now, not when they end
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
        pool.shutdown(wait=finished, cancel_futures=True)


def _client(scheduler: str | None) -> Any:
    """A dask.distributed client of ``scheduler`` (checked before anything is written)."""
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("--executor dask needs dask.distributed: pip install "
                          "'simtopo[dask]'") from None
    if not scheduler:
        raise ConfigError("--executor dask needs --scheduler ADDRESS (e.g. tcp://host:8786)")
    try:
        return Client(scheduler, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"--scheduler {scheduler}: cannot reach the dask scheduler "
                          f"({exc})") from None


def _dask(tasks: Sequence[Task], client: Any) -> Iterator[dict[str, Any]]:
    from distributed import as_completed

    try:
        futures = client.map(evaluate, *zip(*tasks, strict=True), pure=False) if tasks else []
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.close()


def check_options(executor: str, jobs: int | None, scheduler: str | None) -> None:
    """The executor options, refused in one line before anything is written."""
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor: expected one of {', '.join(EXECUTORS)} (got "
                          f"{executor!r})")
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs: expected at least 1 process (got {jobs})")
    if scheduler and executor != "dask":
        raise ConfigError("--scheduler applies to --executor dask only")


def execute(tasks: Sequence[Task], executor: str = "local", jobs: int | None = None,
            scheduler: str | None = None) -> Iterator[dict[str, Any]]:
    """Evaluate ``tasks`` with ``executor``; records come as points finish (in any order)."""
    check_options(executor, jobs, scheduler)
    jobs = jobs or os.cpu_count() or 1
    if executor == "dask":
        return _dask(tasks, _client(scheduler))
    if executor == "serial" or jobs == 1 or len(tasks) <= 1:
        return _serial(tasks)
    return _local(tasks, jobs)


def run_sweep(experiment: str | Path, axes: Sequence[Axis] | None = None,
              variants: Sequence[str] | None = None, reduced: bool = False,
              folder: str | Path | None = None, executor: str = "local",
              jobs: int | None = None, scheduler: str | None = None,
              progress: Progress | None = None, figures: bool = True,
              mode: str = "auto") -> SweepResult:
    """Run (or resume) a sweep of ``experiment`` and write ``folder`` (default
    ``reports/<name>-sweep/``): ``points.jsonl``, ``sweep.csv`` and the figures.

    ``axes`` default to the file's ``sweep:`` block (so do ``variants``); ``mode`` is the
    simulation mode of every point (:mod:`simtopo.sim.driver`).
    """
    exp = load_experiment(experiment, reduced)
    if axes is None:
        block_variants, axes = axes_from_block(exp.sweep, str(exp.source))
        variants = variants or block_variants
    if not axes:
        raise ConfigError("nothing to sweep: give --set KEY=VALUE,... or a 'sweep:' block",
                          file=str(exp.source))
    points = plan_points(exp, axes, variants)
    out = Path(folder) if folder is not None else child_path(
        "reports", f"{exp.name}-sweep", "the experiment name")
    check_options(executor, jobs, scheduler)
    log = Log(out, exp.source)  # claims the folder: one sweep at a time, one experiment
    try:
        return _run_points(exp, axes, points, out, log, reduced, executor, jobs, scheduler,
                           progress, figures, mode)
    finally:
        log.close()


def _run_points(exp: Experiment, axes: Sequence[Axis], points: list[Point], out: Path, log: Log,
                reduced: bool, executor: str, jobs: int | None, scheduler: str | None,
                progress: Progress | None, figures: bool, mode: str) -> SweepResult:
    done = read_log(out)
    records: dict[str, dict[str, Any]] = {}
    todo: list[Task] = []
    fresh: list[dict[str, Any]] = []
    topologies: dict[Path, str] = {}
    for point in points:
        try:
            variant, fingerprint = resolve(exp.source, point, reduced, topologies, mode)
        except ConfigError as err:
            fresh.append(record(point, f"invalid-{__version__}", error=str(err)))
            continue
        previous = done.get((point.key, fingerprint))
        if previous is not None:
            records[point.key] = previous
        else:
            todo.append((point, variant, fingerprint, topologies[variant.topology], mode))
    reused = len(records)
    todo.sort(key=_share_key)
    count = reused
    for rec in fresh:
        if (rec["key"], rec["fingerprint"]) not in done:
            log.write(rec)
        records[rec["key"]] = rec
        count += 1
    stream = execute(todo, executor, jobs, scheduler)
    try:
        for rec in stream:
            log.write(rec)
            records[rec["key"]] = rec
            count += 1
            if progress:
                progress(count, len(points), rec)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:  # stops the workers at once when interrupted
            close()
    result = SweepResult(exp.name, out, list(axes), points, [records[p.key] for p in points],
                         computed=len(todo), reused=reused)
    frame = result.frame
    write_atomic(out / TABLE, lambda f: f.write(
        frame.to_csv(index=False, float_format="%.12g", lineterminator="\n").encode()))
    if figures:
        from .sweep_figures import write_figures

        result.figures = write_figures(frame, result.axes, out)
    return result


def sweep(experiment: str | Path, settings: Mapping[str, Sequence[Any]] | None = None,
          variants: Sequence[str] | None = None, reduced: bool = False,
          folder: str | Path | None = None, executor: str = "local", jobs: int | None = None,
          scheduler: str | None = None, figures: bool = True,
          mode: str = "auto") -> SweepResult:
    """A sweep from Python: ``settings`` maps dotted keys to their values, e.g.
    ``{"plan.tp": [8, 16], "plan.connection": ["p2p", "host"]}`` (default: the file's
    ``sweep:`` block). See :func:`run_sweep`."""
    from .sweep import _check_key, make_axis

    axes = None
    if settings is not None:
        axes = []
        for key, values in settings.items():
            _check_key(key, "sweep")
            many = hasattr(values, "__iter__") and not isinstance(values, str | bytes | dict)
            axes.append(make_axis(key, values if many else [values], "sweep"))
    return run_sweep(experiment, axes, variants, reduced, folder, executor, jobs, scheduler,
                     figures=figures, mode=mode)


def describe(result: SweepResult) -> str:
    """One line: how many points, computed and reused, failed, and where the table is."""
    failed = len(result.failed)
    return (f"{len(result.points)} points ({result.computed} computed, {result.reused} "
            f"reused{f', {failed} failed' if failed else ''}): "
            f"{display_path(result.folder / TABLE)}")
