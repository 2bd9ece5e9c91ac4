"""Run every benchmark and write ``benchmarks/results/RESULTS.md``.

One command regenerates all the results (issue 5)::

    python benchmarks/run_all.py            # everything
    python benchmarks/run_all.py --quick    # every script in its quick mode
    python benchmarks/run_all.py --only bench_vs_sklearn,bench_scaling
    python benchmarks/run_all.py --report-only   # rewrite RESULTS.md from the CSVs
    python benchmarks/run_all.py --snapshot      # benchmark the committed HEAD

Each ``bench_*.py`` of this folder runs in its own interpreter, from the
repository's root, one after the other (never in parallel: they time
things). Their CSV and PNG files land in ``benchmarks/results/``; their
output goes to ``benchmarks/results/logs/<script>.log``. Then
``RESULTS.md`` gathers, per benchmark, the tables of its CSV files, the
targets and whether they are met (from the CSVs for ``bench_vs_sklearn`` and
``bench_scaling``, from the verdict lines the other scripts print), links to
the figures, and the date, versions, machine and load of the run.

``--snapshot [REV]`` benchmarks a commit rather than the working tree: the
``skbilevel`` folder of ``REV`` (default HEAD) is exported with ``git
archive`` into a temporary folder put first on ``PYTHONPATH``, so that edits
made to the working tree while the benchmarks run do not reach them (the
folder, with its Numba cache, is removed at the end). The report says which
``skbilevel`` ran.

A script that fails does not stop the others; its section says so, with the
end of its log. ``--only`` runs some scripts and still writes the report
from all the CSVs present (a section then says when its files are older
than this run).
"""

import argparse
import csv
import io
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime, timezone

import _common

#: The scripts, in the order they run, with their arguments in full and quick runs.
SCRIPTS = {
    "bench_oracles": ([], ["--quick"]),
    "bench_epochs": ([], ["--repeat", "5", "--no-compile"]),
    "bench_solvers": ([], ["--quick"]),
    "bench_vs_sklearn": ([], ["--quick"]),
    "bench_scaling": ([], ["--quick"]),
    "bench_ijcnn1_split": ([], []),
}

#: What each script measures, for the report.
ABOUT = {
    "bench_oracles": "one epoch of the fused minibatch inner oracles against one "
                     "full-data NumPy gradient (issue 2).",
    "bench_epochs": "one SOBA and one SABA epoch on IJCNN1 against one NumPy gradient, "
                    "and the Numba compile time of a first fit.",
    "bench_solvers": "every stochastic solver with its defaults on IJCNN1 (per-feature "
                     "L2) and MNIST hyper-cleaning (issue 3).",
    "bench_vs_sklearn": "the bilevel estimators against scikit-learn's grids and Optuna's "
                        "TPE, same data, same run: fit wall time, held-out loss (issue 5).",
    "bench_scaling": "time per SABA epoch and peak memory against the number of rows, "
                     "dense and sparse (issue 5).",
    "bench_ijcnn1_split": "whether IJCNN1's own validation rows (the last 14,990) are "
                          "drawn like its test rows, and what that does to per-feature "
                          "tuning (issue 4).",
}

#: Columns shown in the report for the wide CSVs (all columns stay in the CSV).
SHOWN = {
    "bench_solvers": [
        "dataset", "solver", "epochs", "solver s", "ms/epoch", "epoch / numpy grad",
        "epochs to abs 0.001", "epochs to rel 0.001", "epochs to abs 0.0001",
        "epochs to rel 0.0001", "final gap", "final rel gap", "final test acc", "final auc",
        "message", "error", "cold first fit s", "warm first fit s",
    ],
    "bench_vs_sklearn": [
        "dataset", "method", "n_hyperparams", "fit_time_s", "fit_cpu_s",
        "time_ratio_to_ref", "test_log_loss", "test_accuracy", "test_mse", "test_r2",
        "target_met", "warnings",
    ],
    "bench_vs_sklearn_profile": [
        "dataset", "method", "solver", "n_iter", "epochs", "fit_time_s", "t_problem_s",
        "t_solver_s", "t_solver_own_s", "t_refit_s", "t_other_s",
    ],
    "bench_scaling": [
        "kind", "n", "n_features", "nnz", "epoch_time_s", "first_epoch_time_s", "data_mb",
        "problem_retained_mb", "problem_peak_mb", "solver_peak_mb", "beyond_data_mb",
        "solver_ratio", "beyond_data_ratio", "problem_time_s", "load_avg_1min",
    ],
}

VERDICT = re.compile(r"target.*\b(met|NOT met)\b|\bNOT met\b", re.IGNORECASE)


def run_script(name, args, log_dir):
    """Run ``benchmarks/<name>.py args``; return (return code, seconds, log path)."""
    log = log_dir / f"{name}.log"
    env = dict(os.environ, PYTHONPATH=_common.child_pythonpath())
    cmd = [sys.executable, str(_common.BENCH_DIR / f"{name}.py"), *args]
    print(f"$ {' '.join(cmd[1:])}   (log: {log})", flush=True)
    start = time.perf_counter()
    with open(log, "w") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        code = subprocess.call(cmd, cwd=_common.REPO_ROOT, env=env, stdout=out,
                               stderr=subprocess.STDOUT)
    elapsed = time.perf_counter() - start
    print(f"  exit {code} after {elapsed:.0f} s", flush=True)
    return code, elapsed, log


def _git(*args):
    return subprocess.run(["git", *args], cwd=_common.REPO_ROOT, capture_output=True,
                          check=True).stdout


def export_snapshot(rev):
    """Export ``skbilevel/`` of commit ``rev`` to a new folder; return (folder, commit)."""
    commit = _git("rev-parse", "--verify", f"{rev}^{{commit}}").decode().strip()
    folder = tempfile.mkdtemp(prefix=f"skbilevel-{commit[:10]}-")
    archive = _git("archive", "--format=tar", commit, "skbilevel")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder, commit


def source_description(snapshot):
    """Which skbilevel the scripts import: ``(long, short)`` descriptions.

    The long one heads the report; the short one goes into the table of the
    runs, one per script, since ``--only`` runs update a record whose other
    scripts may have benchmarked other commits.
    """
    if snapshot is not None:
        folder, commit = snapshot
        return f"commit `{commit}`, exported by `--snapshot` to `{folder}`", commit[:10]
    try:
        commit = _git("rev-parse", "HEAD").decode().strip()
        changed = _git("status", "--porcelain", "--", "skbilevel").decode().split("\n")
    except (OSError, subprocess.CalledProcessError):
        where = "the package on `PYTHONPATH` or installed (not a git checkout)"
        return where, "not a git checkout"
    changed = [line[3:] for line in changed if line.strip()]
    where = f"the working tree at commit `{commit}`"
    short = f"working tree at {commit[:10]}"
    if changed:
        where += f", with uncommitted changes in {len(changed)} files ({', '.join(changed)})"
        short += " with changes"
    if os.environ.get("PYTHONPATH"):
        where += f"; `PYTHONPATH` before the checkout: `{os.environ['PYTHONPATH']}`"
    return where, short


# -- the report -------------------------------------------------------------------


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _cell(value):
    """A CSV string as a table cell: numbers to 4 significant digits."""
    if value is None or value == "":
        return ""
    value = str(value)
    try:
        number = float(value)
    except ValueError:
        return value.replace("|", "/").replace("\n", " ")
    if math.isnan(number):
        return "nan"
    if number == int(number) and abs(number) < 1e9 and "." not in value and "e" not in value:
        return str(int(number))
    return f"{number:.4g}"


def markdown_table(rows, columns=None):
    if not rows:
        return "\n_(no rows)_\n"
    columns = [c for c in (columns or list(rows[0]))
               if any(r.get(c) not in (None, "") for r in rows)]
    lines = ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def verdict_lines(log):
    """The lines of a script's output that state a target and a verdict."""
    if not log.is_file():
        return []
    return [line.strip() for line in log.read_text(errors="replace").splitlines()
            if VERDICT.search(line)]


def _age_note(path, started):
    if path.stat().st_mtime < started:
        stamp = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
        return f" (file from an earlier run, {stamp:%Y-%m-%d %H:%M} UTC)"
    return ""


def section_vs_sklearn(results, started):
    path = results / "bench_vs_sklearn.csv"
    if not path.is_file():
        return "_No results._\n"
    rows = read_csv(path)
    out = [f"Results: [`bench_vs_sklearn.csv`](bench_vs_sklearn.csv){_age_note(path, started)}"
           "; one row per dataset and method. `time_ratio_to_ref`: fit wall time divided by "
           "that of the dataset's reference (LogisticRegressionCV or RidgeCV), same run. "
           "`fit_cpu_s`: process CPU time of the fit (wall time well above it: the fit "
           "waited for a core).\n"]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        sub = [r for r in rows if r["dataset"] == dataset]
        first = sub[0]
        out.append(f"\n**{dataset}**: {first['n_fit']} fitting rows, {first['n_test']} test "
                   f"rows, {first['n_features']} features.\n")
        out.append(markdown_table(sub, SHOWN["bench_vs_sklearn"]))
        notes = [f"{r['method']}: {r['note']}" for r in sub if r.get("note")]
        if notes:
            out.append("\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    out.append("\n**Targets** (issue 5), judged on every per-feature bilevel row:\n")
    targets = [r for r in rows if r.get("target")]
    out.append(markdown_table(targets, ["dataset", "method", "target", "target_met"]))
    bilevel = [r for r in rows if r.get("solver")]
    out.append("\n**Where the bilevel fits spend their time** (seconds): problem "
               "construction, the solver run (`t_solver_own_s`: the solver's own time "
               "from `history_`, without the history's evaluations), the final refit on "
               "all rows, and the rest (validation, splits).\n")
    out.append(markdown_table(bilevel, SHOWN["bench_vs_sklearn_profile"]))
    warned = [r for r in rows if r.get("warning_messages")]
    if warned:
        out.append("\nWarnings raised by the fits (the first message of each kind):\n\n")
        out.append("\n".join(f"- {r['dataset']}, {r['method']}: {r['warning_messages']}"
                              for r in warned) + "\n")
    env_path = results / "bench_vs_sklearn_env.csv"
    if env_path.is_file():
        env = read_csv(env_path)
        out.append("\nRun details: "
                   + "; ".join(f"{e['key']}: {e['value']}" for e in env) + ".\n")
    out.append("\n![test loss against fit time](bench_vs_sklearn.png)\n")
    return "".join(out)


def section_scaling(results, started):
    path = results / "bench_scaling.csv"
    if not path.is_file():
        return "_No results._\n"
    out = [f"Results: [`bench_scaling.csv`](bench_scaling.csv){_age_note(path, started)}. "
           "Memory in MB of resident set size from the OS: `problem_*` = what building "
           "the `LinearBilevelProblem` adds (retained / at its peak), `solver_peak_mb` = "
           "peak during the solve minus RSS after the problem was built, `beyond_data_mb` "
           "= peak minus RSS with only the data (problem and solver); ratios are to the "
           "data's bytes. Below 10^5 rows the memory figures are within the allocator's "
           "noise (a few MB).\n\n"]
    out.append(markdown_table(read_csv(path), SHOWN["bench_scaling"]))
    fit = results / "bench_scaling_fit.csv"
    if fit.is_file():
        out.append("\n**Targets** (issue 5): time per epoch linear in n (slope of "
                   "log time vs log n at most 1.1); memory beyond the data at most half the "
                   "data (judged with the problem's own copies counted, and for the "
                   "solver alone).\n\n")
        out.append(markdown_table(read_csv(fit)))
    out.append("\n![time per epoch and memory against n](bench_scaling.png)\n")
    return "".join(out)


def _files(results, name, suffix, quick):
    """The result files of a script: its ``*_quick*`` ones in a quick run, if any."""
    files = sorted(results.glob(f"{name}*.{suffix}"))
    quick_files = [p for p in files if "_quick" in p.stem]
    return quick_files if quick and quick_files else [p for p in files if p not in quick_files]


def section_generic(name, results, log, started, quick):
    out = []
    for path in _files(results, name, "csv", quick):
        rows = read_csv(path)
        out.append(f"[`{path.name}`]({path.name}){_age_note(path, started)}")
        if name == "bench_solvers" and path.name.endswith("_curves.csv"):
            out.append(f": {len(rows)} rows (one per solver and recorded epoch), "
                       "not shown.\n\n")
            continue
        shown = SHOWN.get(path.stem, SHOWN.get(name))
        out.append("\n\n" + markdown_table(rows, shown) + "\n")
    verdicts = verdict_lines(log)
    if verdicts:
        out.append("**Targets**, as printed by the script:\n\n")
        out.append("\n".join(f"- {v}" for v in verdicts) + "\n")
    for png in _files(results, name, "png", quick):
        out.append(f"\n![{png.stem}]({png.name})\n")
    return "".join(out) or "_No results._\n"


def targets_at_a_glance(results):
    """Every target of the benchmarks and its verdict, in one list."""
    items = []
    path = results / "bench_vs_sklearn.csv"
    if path.is_file():
        for row in read_csv(path):
            if row.get("target"):
                items.append(f"bench_vs_sklearn, {row['dataset']}, {row['method']}: "
                             f"{row['target']}: **{_met(row['target_met'])}**")
    path = results / "bench_scaling_fit.csv"
    if path.is_file():
        for row in read_csv(path):
            items.append(f"bench_scaling, {row['kind']}: time per epoch linear in n: slope "
                         f"of log(epoch time) vs log(n) {float(row['slope']):.3f} (target "
                         f"<= 1.1; time ratio / size ratio per step: "
                         f"{row.get('time_ratio_per_size_ratio', '')}): "
                         f"**{_met(row.get('time_target_met', ''))}**")
            items.append(f"bench_scaling, {row['kind']}: peak memory beyond the data "
                         f"{float(row['max_beyond_data_ratio']):.2f} x data, problem's "
                         f"copies included (target <= {0.5}): "
                         f"**{_met(row['memory_target_met'])}**; solver alone "
                         f"{float(row['max_solver_ratio']):.2f} x data: "
                         f"**{_met(row['memory_target_met_solver_alone'])}**")
    for name in ("bench_oracles", "bench_epochs", "bench_solvers"):
        items += [f"{name}: {line}" for line in verdict_lines(results / "logs" / f"{name}.log")]
    if not items:
        return "_No targets found._\n"
    return "\n".join(f"- {item}" for item in items) + "\n"


def _met(flag):
    return {"yes": "met", "no": "NOT met"}.get(flag, flag)


def _load():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def save_runs(runs, path):
    """Record the scripts run (one dict each) for ``--report-only``."""
    fields = list(dict.fromkeys(key for run in runs.values() for key in run))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(runs.values())


def load_runs(path):
    runs = {row["script"]: row for row in read_csv(path)}
    for row in runs.values():
        row["exit"], row["seconds"] = int(row["exit"]), float(row["seconds"])
    return runs


def machine():
    info = {"platform": platform.platform(), "cpus (os.cpu_count)": os.cpu_count()}
    try:
        with open("/proc/meminfo") as f:
            total = next(line for line in f if line.startswith("MemTotal"))
        info["memory"] = f"{int(total.split()[1]) / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line for line in f if line.startswith("model name"))
        info["cpu"] = model.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        pass
    return info


def _optuna_version():
    try:
        import optuna
    except ImportError:
        return "not installed"
    return optuna.__version__


def write_report(results, runs, args, started, source):
    env = _common.environment()
    for key in ("load average", "cpus", "blas"):  # the load is below; BLAS is per script
        env.pop(key, None)
    env["optuna"] = _optuna_version()
    lines = [
        "# Benchmark results\n",
        f"Generated by `python benchmarks/run_all.py{' --quick' if args.quick else ''}` on "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
        + (" (**quick mode**: subsampled, fewer repeats)" if args.quick else "") + ".\n",
        f"\nskbilevel benchmarked by this run: {source}. Each script's results come "
        "from its latest run: the commit it benchmarked is in the column "
        "`skbilevel` of the table of the runs.\n",
        "\n## Machine and versions\n",
        markdown_table([{"key": k, "value": str(v)} for k, v in
                        {**machine(), **env}.items()]),
        "\nThe machine's cores are shared with other jobs: timings are noisy, comparisons "
        "are made within one run; the load average (1, 5, 15 min) before and after each "
        "script is in the table of the runs. "
        "`bench_vs_sklearn` and `bench_scaling` run every method with one BLAS thread "
        "and `n_jobs=1`; the other scripts say their own settings.\n",
    ]
    if runs:
        lines.append("\n## Runs\n")
        lines.append(markdown_table(
            [dict(run, log=f"logs/{name}.log") for name, run in runs.items()],
            ["script", "skbilevel", "arguments", "exit", "seconds", "load before",
             "load after", "log"],
        ))
        total = sum(run["seconds"] for run in runs.values())
        lines.append(f"\nTotal wall time of the scripts: {total:.0f} s ({total / 60:.1f} min)."
                     "\n")
    lines.append("\n## Targets at a glance\n\n")
    lines.append(targets_at_a_glance(results))
    for name in SCRIPTS:
        lines.append(f"\n## {name}\n\n`benchmarks/{name}.py`: {ABOUT[name]}\n\n")
        if name in runs and runs[name]["exit"] != 0:
            log = results / "logs" / f"{name}.log"
            tail = log.read_text(errors="replace").splitlines()[-15:] if log.is_file() else []
            lines.append(f"**The script failed (exit {runs[name]['exit']}).** End of its log:\n\n"
                         "```\n" + "\n".join(tail) + "\n```\n\n")
        if name == "bench_vs_sklearn":
            lines.append(section_vs_sklearn(results, started))
        elif name == "bench_scaling":
            lines.append(section_scaling(results, started))
        else:
            lines.append(section_generic(name, results, results / "logs" / f"{name}.log",
                                         started, args.quick))
    path = results / "RESULTS.md"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text("".join(line if line.endswith("\n") else line + "\n" for line in lines))
    os.replace(tmp, path)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="run every script in its quick mode")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated subset of {','.join(SCRIPTS)}")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing; rewrite RESULTS.md from the CSVs present")
    parser.add_argument("--snapshot", nargs="?", const="HEAD", default=None, metavar="REV",
                        help="benchmark skbilevel/ as committed in REV (default HEAD), "
                             "exported to a temporary folder, not the working tree")
    args = parser.parse_args(argv)
    names = list(SCRIPTS) if args.only is None else [n for n in args.only.split(",") if n]
    unknown = set(names) - set(SCRIPTS)
    if unknown:
        parser.error(f"unknown scripts {sorted(unknown)}")
    results = _common.RESULTS_DIR
    log_dir = results / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    snapshot = None
    if args.snapshot is not None and not args.report_only:
        snapshot = export_snapshot(args.snapshot)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [snapshot[0], os.environ.get("PYTHONPATH")]))
        print(f"Benchmarking commit {snapshot[1]} (exported to {snapshot[0]})")
    source_file = log_dir / "source.txt"
    if args.report_only and source_file.is_file():
        source, short_source = source_file.read_text().strip(), None
    else:
        source, short_source = source_description(snapshot)
        source_file.write_text(source + "\n")
    runs = {}
    if (log_dir / "runs.csv").is_file() and (args.report_only or args.only):
        runs = load_runs(log_dir / "runs.csv")  # --only updates the record of a full run
    start = time.perf_counter()
    if not args.report_only:
        for name in names:
            script_args = SCRIPTS[name][1 if args.quick else 0]
            load_before = _load()
            code, elapsed, _ = run_script(name, script_args, log_dir)
            runs[name] = {"script": name, "skbilevel": short_source,
                          "arguments": " ".join(script_args) or "(defaults)",
                          "exit": code, "seconds": round(elapsed, 1),
                          "load before": load_before, "load after": _load()}
            save_runs(runs, log_dir / "runs.csv")
    wall = time.perf_counter() - start
    if snapshot is not None:
        shutil.rmtree(snapshot[0], ignore_errors=True)
    path = write_report(results, runs, args, 0.0 if args.report_only else started, source)
    print(f"Report written to {path} (total {wall:.0f} s)")
    return 1 if any(run["exit"] != 0 for run in runs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
