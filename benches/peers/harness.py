"""Side-by-side benchmark: scorch against the Python tools people score Parquet with.

    python3 benches/peers/harness.py --scorch PATH [--scale S] [--threads N] [--repeat N]
                                     [--only WORKLOAD,...] [--exclude ENGINE,...]

(`benches/run` builds the release binary and calls this.) The harness generates the datasets
and models (cached under benches/data/), runs every contender as its own process with the same
thread budget, measures wall time and the peak RSS of its process tree, checks every peer's
predictions against scorch's, prints one table per workload and writes benches/results/.
Exit status: 0 when every run succeeded and every check agreed (a peer that deviates from scorch
and from every agreeing peer alike is reported, not counted), 1 otherwise.
"""
import argparse
import datetime
import json
import os
import shutil
import statistics
import sys

import agreement
import contenders as registry
import datasets
import measure
import models
import report
import scorch_jobs
from common import REPO_ROOT, RUNS_DIR, log, rel

THREAD_ENV = ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "RAYON_NUM_THREADS"]


def parse_args(argv):
    cpus = len(os.sched_getaffinity(0))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scorch", help="the scorch binary to benchmark")
    p.add_argument("--readme-from", metavar="RESULTS_JSON",
                   help="only rewrite the README's summary table from this results file, and exit")
    p.add_argument("--scale", type=float, default=1.0,
                   help="dataset size factor: 1 = 10M tabular rows and 100k sentences (default 1)")
    p.add_argument("--threads", type=int, default=cpus, help=f"threads per contender (default {cpus}: the cores)")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs per contender (default 3); the median wall and the spread are reported")
    p.add_argument("--startup-repeat", type=int, default=5, help="runs of each start-up contender (default 5)")
    p.add_argument("--only", default="", help=f"comma-separated workloads ({','.join(registry.WORKLOADS)})")
    p.add_argument("--exclude", default="", help="comma-separated engines to leave out, e.g. spark-ort")
    p.add_argument("--timeout", type=float, default=3600, help="seconds before a run is killed (default 3600)")
    p.add_argument("--list", action="store_true", help="list the selected contenders and exit")
    args = p.parse_args(argv)
    if not args.scorch and not args.readme_from and not args.list:
        p.error("--scorch is required")
    if args.scale <= 0 or args.threads < 1 or args.repeat < 1 or args.startup_repeat < 1:
        p.error("--scale, --threads, --repeat and --startup-repeat must be positive")
    args.only = [w for w in args.only.split(",") if w]
    args.exclude = {e for e in args.exclude.split(",") if e}
    return args


def environment(threads):
    """The environment of every contender: thread limits, offline Hugging Face, no progress bars."""
    env = dict(os.environ)
    env.update({k: str(threads) for k in THREAD_ENV})
    env.update({
        "SCORCH_NO_PROGRESS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TOKENIZERS_PARALLELISM": "true",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    })
    return env


def confined_cpus(threads):
    """The CPUs each contender is pinned to: the first `threads` available, or None (all) when
    the thread count covers every CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    return set(cpus[:threads]) if threads < len(cpus) else None


def warm_page_cache(folder):
    """Reads every file of a dataset once, so all contenders start from a warm page cache."""
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            while f.read(16 << 20):
                pass


def command(c, args, jobs, report_path):
    if c.engine == "scorch":
        return [args.scorch, "run", jobs[c.key], "--json"]
    return registry.peer_command(c, args.threads, report_path)


def run_contender(c, args, env, cpus, priority, jobs, rows):
    """Runs contender `c` on its `rows` input rows (--repeat or --startup-repeat times); returns
    the list of run records."""
    runs = []
    log_dir = os.path.join(RUNS_DIR, c.key)
    os.makedirs(log_dir, exist_ok=True)
    for i in range(args.startup_repeat if c.workload == "startup" else args.repeat):
        shutil.rmtree(c.output, ignore_errors=True)
        stdout, stderr = os.path.join(log_dir, f"run-{i}.out"), os.path.join(log_dir, f"run-{i}.err")
        peer_report = os.path.join(log_dir, f"run-{i}.json")
        if os.path.exists(peer_report):
            os.remove(peer_report)
        m = measure.run(command(c, args, jobs, peer_report), env=env, cwd=REPO_ROOT, stdout_path=stdout,
                        stderr_path=stderr, cpus=cpus, timeout_s=args.timeout, priority=priority)
        record = {"wall_s": round(m.wall_s, 4), "peak_rss_mib": _round(m.peak_rss_mib),
                  "largest_process_mib": _round(m.largest_process_mib), "exit_code": m.exit_code}
        if m.timed_out:
            record["error"] = f"killed after the {args.timeout:g} s timeout"
        elif m.exit_code != 0:
            record["error"] = f"exit code {m.exit_code}"
        elif c.engine == "scorch":
            with open(stdout) as f:
                manifest = json.load(f)
            record["scorch_timings_ms"] = manifest["timings"]
            record["scorch_rows"] = manifest["rows"]
            if manifest["rows"]["written"] != rows or manifest["rows"]["unscored"]:
                record["error"] = (f"{manifest['rows']['written']} of {rows} rows written, "
                                   f"{manifest['rows']['unscored']} unscored")
        else:
            with open(peer_report) as f:
                record["setup_s"] = round(json.load(f)["setup_s"], 3)
        runs.append(record)
        rss = "unknown" if m.peak_rss_mib is None else f"{m.peak_rss_mib:.0f} MiB"
        log(f"  {c.key} run {i + 1}: {m.wall_s:.2f} s, peak RSS {rss}"
            + (f"  ERROR: {record['error']} (logs: {rel(stderr)})" if "error" in record else ""))
        if "error" in record:
            _print_tail(stderr)
            break
    return runs


def _print_tail(path, lines=15):
    with open(path, errors="replace") as f:
        tail = f.read().splitlines()[-lines:]
    for line in tail:
        log(f"    | {line}")


def _round(value):
    return None if value is None else round(value, 1)


def _max_known(values):
    """The largest value that is not None (a run whose memory could not be sampled), or None."""
    known = [v for v in values if v is not None]
    return max(known) if known else None


def summarize(c, runs, rows):
    """The result record of contender `c`: median wall over its runs, max peak RSS."""
    out = {"workload": c.workload, "name": c.name, "engine": c.engine, "dataset": c.dataset, "model": c.model,
           "reference": c.is_reference, "rows": rows, "output": rel(c.output), "runs": runs}
    errors = [r["error"] for r in runs if "error" in r]
    if errors:
        out["error"] = errors[0]
        return out
    wall = statistics.median(r["wall_s"] for r in runs)
    out.update(wall_s=round(wall, 4), rows_per_s=round(rows / wall, 1),
               wall_min_s=round(min(r["wall_s"] for r in runs), 4),
               wall_max_s=round(max(r["wall_s"] for r in runs), 4),
               peak_rss_mib=_max_known(r["peak_rss_mib"] for r in runs),
               largest_process_mib=_max_known(r["largest_process_mib"] for r in runs))
    if runs[0].get("setup_s") is not None:
        out["setup_s"] = round(statistics.median(r["setup_s"] for r in runs), 3)
    return out


def check_agreement(workload_results, selected, rows):
    """Adds `agreement` to every successful peer result of a workload, against its reference."""
    by_key = {c.key: c for c in selected}
    outputs = {id(r): by_key[r["key"]].output for r in workload_results}
    refs = {}
    for r in workload_results:
        c = by_key[r["key"]]
        if c.is_reference and "error" not in r:
            refs[(c.dataset, c.model)] = c
    loaded = {}
    for r in workload_results:
        c = by_key[r.pop("key")]
        if c.engine == "scorch" or c.model is None or "error" in r:
            continue
        ref = refs.get((c.dataset, c.model))
        if ref is None:  # the reference failed: nothing to compare with
            r["agreement"] = None
            continue
        metric, tol = registry.TOLERANCES[c.model]
        try:
            if ref.key not in loaded:
                try:
                    loaded[ref.key] = agreement.load(ref.output, rows[c.dataset])
                except agreement.OutputError as e:
                    raise agreement.OutputError(f"reference output: {e}") from e
            got = agreement.load(c.output, rows[c.dataset])
            r["agreement"] = {"reference": ref.name, **agreement.compare(loaded[ref.key], got, metric, tol)}
        except agreement.OutputError as e:
            r["agreement"] = {"reference": ref.name, "metric": metric, "value": None, "tolerance": tol,
                              "ok": False, "detail": str(e)}
    cross_check(workload_results, outputs, rows)


def cross_check(workload_results, outputs, rows):
    """For a peer that disagrees with scorch, compares it with the peers that agree with scorch on
    the same model and data (the model's own library among them). A peer that disagrees with all of
    them is marked `alone`: the deviation is its own (a lossy conversion, say), not scorch's."""
    for r in workload_results:
        a = r.get("agreement")
        if not a or a["ok"] or a["value"] is None:
            continue
        metric, tol = a["metric"], a["tolerance"]
        agreeing = [o for o in workload_results if o is not r and o.get("agreement")
                    and o["agreement"]["ok"] and o["dataset"] == r["dataset"] and o["model"] == r["model"]]
        if not agreeing:
            continue
        got = agreement.load(outputs[id(r)], rows[r["dataset"]])
        a["others"] = []
        for o in agreeing:
            c = agreement.compare(agreement.load(outputs[id(o)], rows[o["dataset"]]), got, metric, tol)
            a["others"].append({"name": o["name"], "value": c["value"], "ok": c["ok"]})
        a["alone"] = not any(x["ok"] for x in a["others"])


def add_floor_ratios(results):
    """`x_floor`: each run's wall time over the floor job's on the same dataset."""
    floors = {r["dataset"]: r["wall_s"] for rs in results.values() for r in rs
              if r["model"] is None and r["engine"] == "scorch" and "wall_s" in r}
    for rs in results.values():
        for r in rs:
            if r["dataset"] in floors and "wall_s" in r and r["workload"] in ("mlp", "gbdt", "cheap"):
                r["x_floor"] = round(r["wall_s"] / floors[r["dataset"]], 2)


def problems(results):
    out = []
    for rs in results.values():
        for r in rs:
            who = f"{r['workload']}: {r['name']} ({r['model'] or 'floor'} on {r['dataset']})"
            if "error" in r:
                out.append(f"FAILED {who}: {r['error']}")
            elif r.get("agreement") and not r["agreement"]["ok"]:
                a = r["agreement"]
                verdict = "DEVIATES (from scorch and every agreeing peer)" if a.get("alone") else "DISAGREE"
                others = "; ".join(f"vs {x['name']}: {x['value']:.3g}" for x in a.get("others", []))
                out.append(f"{verdict} {who} vs {a['reference']}: {a['metric']} {a['value']} "
                           f"(tolerance {a['tolerance']:g}) {a['detail']}".rstrip()
                           + (f"; {others}" if others else ""))
    return out


def main(argv):
    args = parse_args(argv)
    readme = os.path.join(REPO_ROOT, "README.md")
    if args.readme_from:
        with open(args.readme_from) as f:
            results = json.load(f)
        if not report.update_readme(results, readme):
            raise SystemExit("README.md has no generated-table markers")
        log(f"rewrote the README's summary table from {rel(os.path.abspath(args.readme_from))}")
        return 0
    selected = registry.select(args.only, args.exclude)
    if args.list:
        for c in selected:
            print(f"{c.workload:<11} {c.engine:<22} {c.model or 'floor':<7} {c.dataset:<9} {c.name}")
        return 0
    if not (os.path.isfile(args.scorch) and os.access(args.scorch, os.X_OK)):
        raise SystemExit(f"no scorch binary at {args.scorch} (build it: cargo build --release -p scorch-engine)")
    args.scorch = os.path.abspath(args.scorch)
    registry.check_requirements(selected)
    started = datetime.datetime.now(datetime.timezone.utc)

    rows = datasets.ensure({c.dataset for c in selected}, args.scale)
    models.ensure(sorted({c.model for c in selected if c.model}))
    env, cpus = environment(args.threads), confined_cpus(args.threads)
    priority = measure.raise_priority()
    jobs = {c.key: scorch_jobs.write_job(args.scorch, threads=args.threads, **registry.scorch_job_spec(c))
            for c in selected if c.engine == "scorch"}

    results = {}
    for workload in dict.fromkeys(c.workload for c in selected):
        members = [c for c in selected if c.workload == workload]
        log(f"workload {workload}")
        for folder in dict.fromkeys(datasets.path(c.dataset) for c in members):
            warm_page_cache(folder)
        workload_results = []
        for c in members:
            runs = run_contender(c, args, env, cpus, priority, jobs, rows[c.dataset])
            workload_results.append({"key": c.key, **summarize(c, runs, rows[c.dataset])})
        check_agreement(workload_results, members, rows)
        results[workload] = workload_results
    add_floor_ratios(results)

    out = {
        "date": started.isoformat(timespec="seconds"),
        "scale": args.scale,
        "threads": args.threads,
        "repeat": args.repeat,
        "startup_repeat": args.startup_repeat,
        "statistics": "wall_s: median over runs; peak_rss_mib: max over runs of the process tree's sampled "
                      "peak RSS (see benches/peers/measure.py)",
        "machine": report.machine(args.scorch, args.threads, cpus),
        "data": {**datasets.describe(), "rows": rows},
        "workloads": results,
        "problems": problems(results),
    }
    paths = report.write(out, started.strftime("%Y-%m-%dT%H%M%SZ"))
    print(report.markdown(out))
    # A full run (every workload, every peer, full scale) is what the README shows.
    if args.scale == 1.0 and not args.only and not args.exclude and report.update_readme(out, readme):
        paths.append("README.md (summary table)")
    log("wrote " + ", ".join(paths))
    # A peer's own deviation (see cross_check) is reported but is not a failure of the run.
    return 1 if any(not p.startswith("DEVIATES") for p in out["problems"]) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
