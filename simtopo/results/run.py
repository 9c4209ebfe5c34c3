"""``simtopo.run``: experiments to results, one variant at a time.

Each variant is simulated and measured (:mod:`simtopo.results.variant_run`), its ``load:``
section too, or its ``serving:`` section played (:mod:`simtopo.results.serving_run`); the
P2P/host-routed speed-ups get their bands (:mod:`simtopo.results.bands`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import errors
from ..constants import DEFAULT_MODEL, DEFAULT_SOC_MODEL, LinkModel, SocModel
from ..errors import ConfigError, SimtopoError
from ..sim.setup import Memo, Setup, rebased, setup_variant
from ..spec.experiment import Experiment, Variant, load_experiment
from ..workload.requests import Requests
from .bands import at_corner, band_rows, band_runs
from .parallel import Forked
from .result import Result, connection_pairs
from .serving_run import run_serving, serving_requests
from .variant_run import (
    LoadSetup,
    run_load,
    run_load_setup,
    run_setup,
    run_variant,
    setup_load,
)

__all__ = ["run", "run_load", "run_setup", "run_variant"]


def run(experiment: str | Path | Experiment, variants: Sequence[str] | None = None,
        reduced: bool = False, link_model: LinkModel = DEFAULT_MODEL,
        soc_model: SocModel = DEFAULT_SOC_MODEL,
        progress: Callable[[str], None] | None = None, mode: str = "auto",
        band: bool = True, jobs: int = 1, waiting: Callable[[], None] | None = None
        ) -> Result:
    """Run an experiment (a file or a loaded :class:`Experiment`) and return its Result.

    ``variants`` restricts the run to those names; ``reduced`` applies the file's ``ci:``
    block (the size CI runs); ``mode`` is the simulation mode (:mod:`simtopo.sim.driver`);
    ``band`` re-runs every P2P/host-routed pair at the ends of the unmeasured constants
    (:mod:`simtopo.results.bands`), so that each speed-up carries its range. With ``jobs`` >
    1 the band's runs go to forked processes while this one simulates the variants
    (:mod:`simtopo.results.parallel`); the Result is the same. ``waiting()`` is called once
    the variants are simulated, while forked band runs may still be going (the CLI loads its
    report's modules there).
    """
    exp = experiment if isinstance(experiment, Experiment) else load_experiment(experiment,
                                                                                reduced)
    chosen = list(exp.variants)
    if variants:
        known = [v.name for v in exp.variants]
        for name in variants:
            if name not in known:
                raise ConfigError(f"unknown variant {name!r} (expected one of: "
                                  f"{', '.join(known)})", file=str(exp.source))
        chosen = [v for v in exp.variants if v.name in variants]
    setups: dict[str, Setup] = {}
    load_setups: dict[str, LoadSetup] = {}  # set up before anything runs: refused at once
    requests: dict[str, Requests] = {}
    for variant in chosen:
        with _named(variant, exp):
            if variant.workload.kind not in ("load", "serving"):
                setups[variant.name] = setup_variant(variant, link_model, soc_model)
            if variant.workload.kind == "serving":
                requests[variant.name] = serving_requests(variant)
            if variant.load is not None:
                load_setups[variant.name] = setup_load(variant, link_model)
    by_name = {v.name: v for v in chosen}
    pairs = [(by_name[a], by_name[b]) for a, b in connection_pairs(
        [(s.variant.name, s.plan.talks, s.variant.inputs())
         for s in setups.values()])] if band else []
    runs = band_runs(pairs)
    band_memo: Memo = {}  # each forked worker has its own copy

    def band_run(i: int) -> tuple[str, Any]:
        variant, favour = runs[i]
        try:
            changed, topo = at_corner(variant, favour, setups[variant.name].topo)
            return "ok", run_setup(rebased(setups[variant.name], changed, topo), soc_model,
                                   memo=band_memo, mode=mode, spans=False).metrics
        except SimtopoError as err:
            return type(err).__name__, str(err)

    with Forked(band_run, len(runs), jobs - 1) as forked:
        results, loads, servings = [], [], []
        memo: Memo = {}
        serving_memo: dict[str, Any] = {}
        for variant in chosen:
            if progress:
                progress(variant.name)
            with _named(variant, exp):
                if variant.name in setups:
                    results.append(run_setup(setups[variant.name], soc_model, memo=memo,
                                             mode=mode))
                if variant.workload.kind == "serving":
                    servings.append(run_serving(variant, link_model, soc_model,
                                                memo=serving_memo,
                                                requests=requests[variant.name]))
                if variant.load is not None:
                    loads.append(run_load_setup(load_setups[variant.name]))
        result = Result(exp.name, exp.description, str(exp.source), results, loads,
                        servings=servings)
        if waiting is not None:
            waiting()
        answers = forked.results(progress and (
            lambda i: progress(f"band: {runs[i][0].name} with constants favouring "
                               f"{runs[i][1]}")))
    metrics = {}
    for (variant, favour), (status, value) in zip(runs, answers, strict=True):
        if status != "ok":
            raise getattr(errors, status)(f"{exp.source}: the speed-up band: {value}")
        metrics[(variant.name, favour)] = value
    result.bands = band_rows(pairs, metrics) if pairs else []
    return result


@contextmanager
def _named(variant: Variant, exp: Experiment) -> Iterator[None]:
    """Errors of ``variant`` name it (and the experiment file)."""
    try:
        yield
    except ConfigError as err:
        raise type(err)(f"variant {variant.name!r}: {err.message}",
                        file=err.file or str(exp.source), path=err.path,
                        line=err.line) from None
    except SimtopoError as err:
        raise type(err)(f"{exp.source}: variant {variant.name!r}: {err}") from None
