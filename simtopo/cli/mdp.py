"""``simtopo mdp``: dump a starting MDP partition config, or validate one against a model and a
topology."""

from __future__ import annotations

import argparse
from typing import Any

from .. import limits
from .common import (
    EXIT_OK,
    add_workload_options,
    counted,
    devices_option,
    echo,
    memory_fit,
    rules,
    subcommands,
    workload_graphs,
)


def cmd_mdp_dump(args: argparse.Namespace) -> int:
    """``simtopo mdp dump``: one partition listing every node of the model."""
    from ..plan.mdp import dump_mdp, write_mdp

    ref, decode, _, _ = workload_graphs(args)
    write_mdp(dump_mdp(decode, cores=args.cores), args.output)
    echo(f"wrote {args.output}: one partition of {len(decode)} nodes of {ref.name}")
    return EXIT_OK


def cmd_mdp_validate(args: argparse.Namespace) -> int:
    """``simtopo mdp validate``: check a config, then print its plan and memory."""
    from ..plan.mdp import plan_from_mdp, read_mdp
    from ..report.planview import render_plan
    from ..topology.files import load_topology

    topo = load_topology(args.topology)
    ref, decode, prefill, _ = workload_graphs(args)
    config, doc = read_mdp(args.file)
    plan = plan_from_mdp(config, doc, decode, ref.decoder, topo,
                         devices_option(topo, args.devices), rules(args.rule))
    memory = memory_fit(plan, decode, prefill, ref, topo, args)
    echo(f"ok: {args.file} on {topo.name} with {ref.name}")
    echo(render_plan(plan, memory))
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``mdp dump|validate`` to the ``simtopo`` sub-commands."""
    mdp = subcommands(sub, "mdp", "Qualcomm MDP partition configs")
    p = mdp.add_parser("dump", help="a starting config: one partition listing every node")
    add_workload_options(p)
    p.add_argument("-o", "--output", required=True, metavar="JSON")
    p.add_argument("--cores", type=counted(limits.MAX_THREADS), default=16)
    p.set_defaults(func=cmd_mdp_dump)
    p = mdp.add_parser("validate", help="check a config against a model and a topology")
    p.add_argument("file", metavar="JSON")
    p.add_argument("--topology", required=True, metavar="FILE")
    p.add_argument("--devices", metavar="PATTERNS",
                   help="the SoCs of logical devices 0, 1, ... (default: topology order)")
    p.add_argument("--rule", action="append", metavar="PATTERN=SPLIT",
                   help="split GEMMs of graphs by name, e.g. 'MatMul_*=M' (repeatable)")
    add_workload_options(p)
    p.set_defaults(func=cmd_mdp_validate)
