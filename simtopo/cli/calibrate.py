"""``simtopo calibrate``: the link and SoC models against the calibration measurements."""

from __future__ import annotations

import argparse
from typing import Any

from .common import EXIT_OK, counted, echo


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``simtopo calibrate``: refit, write the validation document, or list the errors."""
    from ..calibration.points import all_points
    from ..calibration.validation import (
        FIT_RECORD,
        MEANING,
        SCALE,
        read_fit_record,
        run_fit,
        validation_document,
        write_fit_record,
    )
    from ..io.atomic import check_output

    if args.output is not None:
        check_output(args.output)  # before the fit, not after
    points = all_points()
    if args.fit in ("all", "links"):
        record = run_fit(points, args.max_evaluations, args.jobs)
        if FIT_RECORD.is_file():
            record["soc"] = read_fit_record().get("soc")
        write_fit_record(record)
        echo(f"link fit: objective {record['objective']:.4f} after {record['evaluations']} "
             "evaluations; suggested constants for simtopo/constants.py:")
        from ..calibration.links import BOUNDS

        for name in BOUNDS:
            value = record["model"][name]
            unit = MEANING[name][0]
            shown = f"  # {value * SCALE[unit]:.3g} {unit}" if unit in ("us", "ns") else ""
            echo(f"  {name.upper()} = {value:.3g}{shown}")
    if args.fit in ("all", "soc"):
        from ..calibration.soc import fit_record, fit_soc

        soc = fit_soc()
        record = read_fit_record()
        record["soc"] = fit_record(soc)
        write_fit_record(record)
        capped = " (capped at 1: the data wanted more)" if soc.capped else ""
        echo("SoC fit on GPT-J decode; suggested constants for simtopo/constants.py:")
        echo(f"  DRAM_EFFICIENCY = {soc.model.dram_efficiency:.4g}{capped}")
        echo(f"  MXFP6_EXPAND_OPS_PER_WEIGHT = {soc.model.mxfp6_expand_ops_per_weight:.4g}")
        other = "SERIAL" if soc.model.mxfp6_overlap else "OVERLAPPED"
        echo(f"  MXFP6_{other}_EXPAND_OPS_PER_WEIGHT = {soc.other_expand_ops_per_weight:.4g}"
             "  (the other form, for simtopo whatif)")
        from ..calibration.mlperf import conv_record, fit_conv

        cnn = fit_conv(soc.model)
        record["cnn"] = conv_record(cnn)
        write_fit_record(record)
        echo("convolution efficiency on MLPerf ResNet-50 offline (2 Ultra cards):")
        echo(f"  CONV_EFFICIENCY = {cnn.model.conv_efficiency:.4g}")
    if args.output is not None:
        from ..io.atomic import write_text_atomic

        write_text_atomic(args.output, validation_document(points, read_fit_record()))
        echo(f"wrote {args.output}")
    if not args.fit and args.output is None:
        from ..calibration.points import predict, relative_error

        for point, value in zip(points, predict(points), strict=True):
            echo(f"{100 * relative_error(value, point.measured):+7.1f}%  {point.machine}: "
                 f"{point.name}")
        from ..calibration.soc import measured_tokens_per_s, predict_soc

        measured = measured_tokens_per_s()
        for precision, got in predict_soc().items():
            value = got["decode_tokens_per_s"]
            echo(f"{100 * relative_error(value, measured[precision]):+7.1f}%  ai100-standard: "
                 f"gpt-j-6b decode {precision} tok/s")
        from ..calibration.mlperf import measured_samples_per_s, predict_offline

        got = predict_offline()["offline_samples_per_s"]
        echo(f"{100 * relative_error(got, measured_samples_per_s()):+7.1f}%  r282-2ultra: "
             "resnet50 offline samples/s")
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``calibrate`` to the ``simtopo`` sub-commands."""
    p = sub.add_parser("calibrate",
                       help="link and SoC models against the calibration measurements")
    p.add_argument("--fit", nargs="?", const="all", choices=("all", "links", "soc"),
                   help="refit (writes reports/calibration/fit.json): the link model with each "
                        "machine left out in turn (about 40 minutes on one core; see --jobs), "
                        "the SoC model on GPT-J decode "
                        "(seconds), or both (the default)")
    p.add_argument("-o", "--output", metavar="MARKDOWN",
                   help="write the validation document (docs/validation.md)")
    p.add_argument("--max-evaluations", type=counted(100_000), default=800, metavar="N")
    p.add_argument("--jobs", type=counted(64), default=1, metavar="N",
                   help="fit the leave-one-machine-out models in N processes")
    p.set_defaults(func=cmd_calibrate)
