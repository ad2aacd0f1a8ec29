"""Success curves and final-success table of one or more sweeps, from the runs' local metrics.jsonl.

    python launch/plot.py sweeps/2025-06-01_12-00-00 [more sweep or run dirs] --by agent.chunk_length
    python launch/plot.py sweeps/cube-double --by agent.name --paper   # beside the paper's curves
    python launch/plot.py sweeps/cube-double --by agent.name --aggregate   # rliable's IQM, P(X > Y), ...

Every dir under the given ones that holds `.hydra/config.yaml` is a run, except a dir that holds runs below
it: a vector of runs (one process training several seeds or tasks) keeps one member dir per run, and the
members are the runs. A run's value of `--by` in its config picks its curve.

Writes OUT.png and OUT.pdf (mean over runs with a 95% bootstrap band, the offline/online
boundary dashed) and OUT.md (the metric at the end of each phase), and prints the table. No W&B needed.

Alignment: each run's curve is linearly interpolated onto the union of the x values of its group, inside
the run's own range only (never extrapolated). Runs evaluated at slightly different steps (online
evaluations wait for the chunk in flight) are thus averaged at common x; a run that stopped early simply
drops out after its last point, and the band there is over fewer runs. The end-of-phase table uses only
runs that reached the end of that phase; the others are listed as missing or incomplete.

--paper adds the authors' published curve (launch/analysis/paper.py) for each agent and task of the runs that
the paper has (the method named by the run's agent.paper_label): dashed, with its 95% band, labelled
"paper: <method>" (the paper's own 5-task mean when the runs cover a whole OGBench domain, one curve per task
for other mixes), and the table gains its value at the end of each phase. Runs the paper has no curve for
plot as without it. The QAM authors' results (launch/analysis/qam_results.py: 12-seed mean and 95% band)
are drawn the same way, labelled "QAM paper: <method>", for runs of their online budget (500K steps) or of
a method and task only they have (launch/analysis/yardsticks.py).

--aggregate writes instead rliable's aggregates over runs x tasks (launch/analysis/aggregate.py; a run's task
is its env.name): OUT.md with IQM, mean, median and optimality gap of the final metric per phase, probability
of improvement and performance profiles, with 95% stratified bootstrap CIs, and the figures OUT (aggregates),
OUT_curves (IQM and mean over steps), OUT_improvement and OUT_profile (.png and .pdf). With --paper the
paper's aggregate (its ogbench-aggregate curves) stands beside each method it has.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from launch.analysis import curves, paper, qam_results, yardsticks
from launch.analysis.aggregate_report import aggregate_report
from launch.analysis.overlays import generated_data_warning, paper_overlays
from launch.analysis.runs import RunCurve, expected_runs, find_runs, load_run

REPO = Path(__file__).resolve().parents[1]


def runs_title(configs) -> str:
    """'a, b on env1 | c on env2': each env once, with the agents run on it."""
    by_env = {}
    for config in configs:
        by_env.setdefault(config.env.name, set()).add(config.agent.name)
    return " | ".join(f"{', '.join(sorted(names))} on {env}" for env, names in sorted(by_env.items()))


def output_stem(args: argparse.Namespace, kind: str) -> Path:
    """Where the outputs go, without suffix: `--out fig.png` writes fig.png, fig.pdf and fig.md rather
    than fig.png.png."""
    out = args.out or args.dirs[0] / f"{args.metric.replace('/', '_')}_{kind}_{args.by}"
    if out.suffix in (".png", ".pdf", ".md"):
        out = out.with_suffix("")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("dirs", nargs="+", type=Path, metavar="SWEEP_DIR", help="sweep dirs or run dirs")
    parser.add_argument("--by", default="agent.chunk_length", help="config key, one curve per value")
    parser.add_argument("--x", default="step", choices=["step", "time"], help="logged step, or seconds")
    parser.add_argument("--metric", default="eval/success")
    parser.add_argument("--out", type=Path, help="path, suffix dropped (default: FIRST_DIR/<metric>_by_<by>)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed, for a reproducible band")
    parser.add_argument(
        "--paper",
        action="store_true",
        help="draw the paper's curves for the runs' agents and tasks (--x step only)",
    )
    parser.add_argument(
        "--aggregate",
        action="store_true",
        help="rliable aggregates over runs x tasks (IQM, mean, median, optimality gap, IQM curves, "
        "probability of improvement, performance profile) instead of one curve per value (--x step only)",
    )
    args = parser.parse_args(argv)
    if args.paper and args.x != "step":
        raise ValueError(f"--paper: expected --x step (the paper's x is steps), found --x {args.x}")
    if args.aggregate and args.x != "step":
        raise ValueError(f"--aggregate: expected --x step (curves over steps), found --x {args.x}")

    dirs = ", ".join(map(str, args.dirs))
    runs = find_runs(args.dirs)
    if not runs:
        raise FileNotFoundError(f"no run (a dir with .hydra/config.yaml) under {dirs}")
    configs = {run_dir: OmegaConf.load(run_dir / ".hydra" / "config.yaml") for _, _, run_dir in runs}
    run_curves, loaded, problems = [], [], []
    for root, _, run_dir in runs:
        name = str(run_dir.relative_to(root.parent))
        curve, problem = load_run(run_dir, configs[run_dir], args.by, args.metric, args.x)
        if curve is not None:
            run_curves.append(curve)
            loaded.append((curve, configs[run_dir]))
        if problem:
            problems.append(f"{name}: {problem}")
    for root in args.dirs:
        expected, found = expected_runs(root), len({job for run_root, job, _ in runs if run_root == root})
        if expected is not None and found < expected:
            problems.append(f"{root}: {expected} jobs launched, {found} run dirs (the rest never started)")

    groups = curves.group(run_curves)
    if not groups:
        raise ValueError(f"no run under {dirs} logged {args.metric}; " + "; ".join(problems))
    rng = np.random.default_rng(args.seed)
    if args.aggregate:
        return write_aggregate(args, loaded, rng, problems)
    summaries = {
        value: curves.summarize(*curves.align(members), rng, args.resamples)
        for value, members in groups.items()
    }
    overlays, notes = paper_overlays(loaded, yardsticks.load_sources()) if args.paper else (None, [])
    data_warning = generated_data_warning([config for _, config in loaded]) if args.paper else None
    table = curves.final_table(groups, args.by, args.metric, rng, args.resamples, overlays)
    title = runs_title(configs.values())
    figure = curves.plot(
        summaries,
        {value: len(members) for value, members in groups.items()},
        {value: curves.boundaries_of(members, args.x) for value, members in groups.items()},
        args.by,
        args.metric,
        args.x,
        title,
        tuple(overlays or ()),
        any("mapped onto [0" in note for note in notes),
    )

    if data_warning:
        figure.suptitle(f"warning: {data_warning}", color="tab:red", fontsize=8)
    out = output_stem(args, "by")
    paths = {suffix: out.parent / f"{out.name}.{suffix}" for suffix in ("png", "pdf", "md")}
    figure.savefig(paths["png"], dpi=150)
    figure.savefig(paths["pdf"])
    report = [f"## {title}", "", table]
    if args.paper:
        sources = {overlay.curve.source for overlay in overlays}
        files = {"Q-chunking": paper.CURVES_CSV, qam_results.SOURCE: qam_results.RESULTS_CSV}
        report += [
            "",
            *(
                f"Paper ({source}): the authors' published results ({files[source].relative_to(REPO)}), mean "
                "and 95% CI over their seeds."
                for source in sorted(sources) or ["Q-chunking"]
            ),
            *([f"- **warning: {data_warning}**"] if data_warning else []),
            *(f"- {note}" for note in notes),
        ]
    if problems:
        report += [
            "",
            "Missing or incomplete runs (curves stop where their logs do; the table counts only",
            "the phases they finished):",
            "",
            *(f"- {problem}" for problem in problems),
        ]
    paths["md"].write_text("\n".join(report) + "\n")
    print("\n".join(report))
    for problem in problems + ([data_warning] if data_warning else []):
        print(f"warning: {problem}", file=sys.stderr)
    print("wrote " + ", ".join(map(str, paths.values())))
    return 0


def write_aggregate(
    args: argparse.Namespace, loaded: list[tuple[RunCurve, DictConfig]], rng: np.random.Generator, problems
) -> int:
    """plot.py --aggregate: OUT.md and the figures OUT.png/pdf (aggregates), OUT_curves, OUT_improvement
    (two methods or more) and OUT_profile."""
    lines, figures = aggregate_report(loaded, args.by, args.metric, rng, args.resamples, args.paper)
    envs = sorted({config.env.name for _, config in loaded})
    report = [f"## Aggregates by {args.by} over {len(envs)} task(s): {', '.join(envs)}", "", *lines]
    if problems:
        report += ["", "Missing or incomplete runs (counted only in the phases they finished):", ""]
        report += [f"- {problem}" for problem in problems]
    out = output_stem(args, "aggregate_by")
    paths = [out.parent / f"{out.name}.md"]
    paths[0].write_text("\n".join(report) + "\n")
    for suffix, figure in figures.items():
        for kind in ("png", "pdf"):
            paths.append(out.parent / f"{out.name}{suffix}.{kind}")
            figure.savefig(paths[-1], dpi=150)
    print("\n".join(report))
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    print("wrote " + ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
