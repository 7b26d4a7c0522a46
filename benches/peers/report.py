"""The machine description, the result tables and the files under benches/results/.

Nothing written here names a path of the machine that ran the benchmark: datasets, models and
outputs are named relative to the repository, and the scorch binary by its version and commit.
"""
import importlib.metadata
import json
import math
import os
import platform
import subprocess

from common import REPO_ROOT, RESULTS_DIR, rel

PEER_PACKAGES = ["pyarrow", "numpy", "pandas", "duckdb", "torch", "onnxruntime", "onnx", "onnxmltools",
                 "xgboost", "lightgbm", "sentence-transformers", "transformers", "tokenizers", "pyspark",
                 "safetensors"]

TITLES = {
    "mlp": "MLP 64-256-256-1 on the mlp dataset",
    "gbdt": "Gradient-boosted trees on the gbdt dataset (xgb500: XGBoost 500 trees depth 6; "
            "lgb500: LightGBM 500 trees 63 leaves; lgbcat: LightGBM 200 trees 63 leaves, 4 categorical features)",
    "cheap": "Cheap models beside the floor (scorch with no model: scan + stamp + commit + write)",
    "embeddings": "Sentence embeddings, all-MiniLM-L6-v2 (max 256 tokens, mean pooling, normalized)",
    "startup": "Start-up: a 1,000-row job from a cold process (wall = cold start)",
    "memory": "Memory growth: the scorch MLP job on half, all and twice the mlp dataset",
}


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _os_name():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def _java_version():
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (out.stderr or out.stdout).splitlines()
    return lines[0] if lines else None


def _git(*args):
    try:
        out = subprocess.run(["git", "-C", REPO_ROOT, *args], capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def machine(scorch, threads, cpus):
    """What ran the benchmark: hardware, OS, library versions, scorch's version and commit."""
    versions = {}
    for name in PEER_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    scorch_version = subprocess.run([scorch, "--version"], capture_output=True, text=True).stdout.strip()
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": _os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "java": _java_version(),
        "threads": threads,
        "cpu_affinity": sorted(cpus) if cpus else None,
        "libraries": versions,
        "scorch": {"version": scorch_version, "commit": _git("rev-parse", "HEAD"),
                   "tree_modified": bool(status) if status is not None else None},
    }


def _fmt(value, spec, empty="—"):
    return empty if value is None else format(value, spec)


def _agreement_cell(c):
    a = c.get("agreement")
    if c.get("error"):
        return "**FAILED**"
    if a is None:
        return "reference" if c["reference"] else "—"
    label = "max abs diff" if a["metric"] == "max_abs_diff" else "min cosine"
    value = "—" if a["value"] is None else (f"{a['value']:.2e}" if a["metric"] == "max_abs_diff"
                                            else f"{a['value']:.6f}")
    if a["ok"]:
        return f"{label} {value} ok"
    cell = f"**DISAGREE** {label} {value} (tol {a['tolerance']:g}; {a['detail']})"
    if a.get("alone"):
        names = ", ".join(f"{x['name']} {x['value']:.2e}" for x in a["others"])
        cell += f"; off the agreeing peers too ({names}): the peer's own deviation"
    return cell


def table(workload, contenders):
    """A Markdown table of one workload's results."""
    head = ["contender", "model", "data", "rows", "rows/s", "wall s", "× floor", "peak RSS MiB",
            "setup s", "agreement"]
    lines = [f"### {workload}: {TITLES[workload]}", "", "| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] * len(head)) + "|"]
    for c in contenders:
        lines.append("| " + " | ".join([
            c["name"], c["model"] or "—", c["dataset"], f"{c['rows']:,}",
            _fmt(c.get("rows_per_s"), ",.0f"), _wall_cell(c, 2), _fmt(c.get("x_floor"), ".2f"),
            _fmt(c.get("peak_rss_mib"), ",.0f"), _fmt(c.get("setup_s"), ".2f"), _agreement_cell(c),
        ]) + " |")
    return "\n".join(lines)


def markdown(results):
    m = results["machine"]
    lines = [
        f"# scorch side-by-side benchmark, {results['date']}",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']} (kernel {m['kernel']})",
        f"- {m['scorch']['version']}, commit {m['scorch']['commit']}"
        + (" (with uncommitted changes)" if m["scorch"]["tree_modified"] else ""),
        f"- scale {results['scale']}, {results['threads']} threads per contender, "
        f"{results['repeat']} run(s) each (wall: median, and min–max when more than one; peak RSS: "
        f"max over runs), warm page cache",
        f"- data: Parquet, {results['data']['compression']}, {results['data']['encoding']}, "
        f"row groups of {results['data']['row_group_rows']:,} rows",
        "",
    ]
    for workload, contenders in results["workloads"].items():
        lines += [table(workload, contenders), ""]
    failures = results["problems"]
    if failures:
        lines += ["## Problems", ""] + [f"- {p}" for p in failures] + [""]
    lines += ["Every run, the library versions and the machine: `benches/results/latest.json` "
              "(and `results-<date>.json`); the method: `benches/peers/README.md`.", ""]
    return "\n".join(lines)


def write(results, stamp):
    """Writes results-<stamp>.json, latest.json and latest.md; returns their repository paths."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    text = json.dumps(results, indent=2) + "\n"
    paths = [os.path.join(RESULTS_DIR, f"results-{stamp}.json"), os.path.join(RESULTS_DIR, "latest.json")]
    for p in paths:
        with open(p, "w") as f:
            f.write(text)
    md = os.path.join(RESULTS_DIR, "latest.md")
    with open(md, "w") as f:
        f.write(markdown(results))
    return [rel(p) for p in paths + [md]]


# The README's summary table: one row group per model, generated from a results file, between
# these markers (never edited by hand).
README_BEGIN = "<!-- benches/run writes this table from benches/results/latest.json: do not edit -->"
README_END = "<!-- end of the generated table -->"

SUMMARY_LABELS = {
    ("mlp", "mlp"): "MLP 64-256-256-1, {rows} rows × 64 f32",
    ("gbdt", "xgb500"): "XGBoost 500 trees depth 6, {rows} rows × 32 f32",
    ("gbdt", "lgb500"): "LightGBM 500 trees 63 leaves, same data",
    ("gbdt", "lgbcat"): "LightGBM 200 trees 63 leaves, 4 categorical features, same data",
    ("embeddings", "minilm"): "all-MiniLM-L6-v2, {rows} sentences (3–120 words)",
    ("cheap", None): "floor: scan + stamp + commit + write, no model ({dataset} data)",
    ("cheap", "logreg"): "logistic regression ({dataset} data)",
    ("cheap", "xgb10"): "XGBoost 10 trees ({dataset} data)",
    ("startup", "mlp"): "start-up: a {rows}-row MLP job, cold process",
}


def _rows_label(n):
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return f"{n:,}"


def _wall_cell(c, digits):
    wall = c.get("wall_s")
    if wall is None:
        return "—"
    cell = f"{wall:.{digits}f}"
    low, high = c.get("wall_min_s"), c.get("wall_max_s")
    if low is not None and high is not None and len(c.get("runs", [])) > 1:
        cell += f" ({low:.{digits}f}–{high:.{digits}f})"
    return cell


def _summary_agreement(c):
    if c.get("error"):
        return "**FAILED**"
    a = c.get("agreement")
    if a is None:
        return "reference" if c["reference"] else "—"
    if a["value"] is None:
        return "—"
    if a["metric"] == "min_cosine":
        return f"cosine ≥ {math.floor(a['value'] * 1e8) / 1e8:.8f}"
    if a["value"] == 0:
        return "0 (bit-identical)"
    text = f"{a['value']:.2e}"
    if not a["ok"]:
        text += " (disagrees)" if not a.get("alone") else " (the peer's own deviation)"
    return text


def summary_table(results):
    """The README's table: per model, scorch and its peers fastest first (the floor and the cheap
    models with their multiple of the floor), start-up and memory growth last."""
    head = "| workload | contender | rows/s | wall s | peak RSS MiB | agreement with scorch |"
    lines = [head, "|---|---|---|---|---|---|"]
    workloads = results["workloads"]
    for workload in ["mlp", "gbdt", "embeddings", "cheap", "startup"]:
        groups = {}
        for c in workloads.get(workload, []):
            groups.setdefault((c["model"], c["dataset"]), []).append(c)
        for (model, dataset), contenders in groups.items():
            template = SUMMARY_LABELS.get((workload, model))
            if template is None:
                continue
            contenders = sorted(contenders, key=lambda c: c.get("wall_s") or float("inf"))
            label = template.format(rows=_rows_label(contenders[0]["rows"]), dataset=dataset)
            digits = 3 if workload == "startup" else 2
            for i, c in enumerate(contenders):
                name = c["name"]
                scorch = name.startswith("scorch")
                if scorch and c.get("x_floor") and model is not None and workload == "cheap":
                    name = f"{name} ({c['x_floor']:.2f} × floor)"
                if c["engine"] == "decode" and c.get("x_floor"):
                    # Its wall over the floor's: the floor's speed as a share of decoding alone.
                    name = f"{name} (the floor runs at {c['x_floor']:.0%} of its speed)"
                rate = "—" if workload == "startup" else _fmt(c.get("rows_per_s"), ",.0f")
                wall = _wall_cell(c, digits)
                if scorch and c["reference"]:
                    name, rate, wall = f"**{name}**", f"**{rate}**" if rate != "—" else rate, (
                        f"**{wall}**" if workload == "startup" else wall)
                lines.append("| " + " | ".join([
                    label if i == 0 else "", name, rate, wall,
                    _fmt(c.get("peak_rss_mib"), ",.0f"), _summary_agreement(c),
                ]) + " |")
    memory = sorted(workloads.get("memory", []), key=lambda c: c["rows"])
    if memory:
        sizes = " → ".join(_rows_label(c["rows"]) for c in memory)
        lines.append("| " + " | ".join([
            f"memory: the MLP job on {sizes} rows", "scorch",
            " / ".join(_fmt(c.get("rows_per_s"), ",.0f") for c in memory),
            " / ".join(_fmt(c.get("wall_s"), ".2f") for c in memory),
            " / ".join(_fmt(c.get("peak_rss_mib"), ",.0f") for c in memory), "—",
        ]) + " |")
    return "\n".join(lines)


def update_readme(results, readme):
    """Rewrites the table between the README's markers from `results`; returns False when the
    README has no markers."""
    with open(readme) as f:
        text = f.read()
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        return False
    source = (f"From `benches/results/latest.json`: {results['date'][:10]}, scale {results['scale']}, "
              f"{results['repeat']} run(s) per contender (wall: median, and the spread when more "
              f"than one), {results['threads']} threads each.")
    new = text[:start] + README_BEGIN + "\n" + source + "\n\n" + summary_table(results) + "\n" \
        + text[end:]
    with open(readme, "w") as f:
        f.write(new)
    return True
