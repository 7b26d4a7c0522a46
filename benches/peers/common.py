"""Paths, parameter stamps and small helpers shared by the benchmark modules.

Everything the harness writes lives under benches/data/ (generated, git-ignored) and
benches/results/ (the reports). Paths that end up in a report are written relative to the
repository root, never as absolute paths of the machine that ran the benchmark.
"""
import json
import os
import sys

PEERS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(PEERS_DIR))
DATA_DIR = os.path.join(REPO_ROOT, "benches", "data")
RESULTS_DIR = os.path.join(REPO_ROOT, "benches", "results")
MODELS_DIR = os.path.join(DATA_DIR, "models")
JOBS_DIR = os.path.join(DATA_DIR, "jobs")
OUT_DIR = os.path.join(DATA_DIR, "out")
STAMPS_DIR = os.path.join(DATA_DIR, "stamps")
RUNS_DIR = os.path.join(DATA_DIR, "runs")


def rel(path):
    """`path` relative to the repository root, for reports and log lines."""
    return os.path.relpath(os.path.abspath(path), REPO_ROOT)


def feature_names(n):
    """The feature columns of the MLP and GBDT datasets: f0 .. f{n-1}."""
    return [f"f{i}" for i in range(n)]


def stamp_matches(name, params):
    """True when the artefact `name` was generated with exactly `params` (a JSON-able dict)."""
    try:
        with open(os.path.join(STAMPS_DIR, f"{name}.json")) as f:
            return json.load(f) == params
    except (OSError, ValueError):
        return False


def write_stamp(name, params):
    """Records that the artefact `name` is complete and was generated with `params`."""
    os.makedirs(STAMPS_DIR, exist_ok=True)
    tmp = os.path.join(STAMPS_DIR, f".{name}.json.tmp")
    with open(tmp, "w") as f:
        json.dump(params, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, os.path.join(STAMPS_DIR, f"{name}.json"))


def clear_stamp(name):
    """Marks the artefact `name` as incomplete before it is (re)generated."""
    try:
        os.remove(os.path.join(STAMPS_DIR, f"{name}.json"))
    except FileNotFoundError:
        pass


def log(message):
    """A progress line on stderr (stdout stays free for the result tables)."""
    print(message, file=sys.stderr, flush=True)

