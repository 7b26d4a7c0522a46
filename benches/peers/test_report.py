"""Checks of the README's generated benchmark table (stdlib only: `python3 -m unittest` here)."""
import json
import os
import tempfile
import unittest

import report


def contender(name, model, wall, reference=False, agreement=None, runs=1, workload="mlp",
              dataset="mlp", rows=10_000_000, x_floor=None):
    walls = [wall] * runs if runs == 1 else [wall * 0.9, wall, wall * 1.2][:runs]
    return {"workload": workload, "name": name, "engine": name, "dataset": dataset, "model": model,
            "reference": reference, "rows": rows, "runs": [{"wall_s": w} for w in walls],
            "wall_s": wall, "wall_min_s": min(walls), "wall_max_s": max(walls),
            "rows_per_s": rows / wall, "peak_rss_mib": 300, "agreement": agreement, "x_floor": x_floor}


def results(runs):
    ok = {"metric": "max_abs_diff", "value": 2.98e-07, "ok": True}
    return {
        "date": "2026-12-02T05:00:00+00:00", "scale": 1.0, "repeat": runs, "threads": 2,
        "workloads": {
            "mlp": [contender("pyarrow + onnxruntime", "mlp", 14.5, agreement=ok, runs=runs),
                    contender("scorch", "mlp", 6.4, reference=True, runs=runs)],
            "memory": [contender("scorch", "mlp", 6.2, reference=True, workload="memory"),
                       contender("scorch", "mlp", 3.4, reference=True, workload="memory",
                                 dataset="mlp-half", rows=5_000_000)],
        },
    }


class SummaryTable(unittest.TestCase):
    def test_fastest_first_with_the_spread_of_repeated_runs(self):
        table = report.summary_table(results(3))
        rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
        self.assertIn("**scorch**", rows[0])
        self.assertIn("6.40 (5.76–7.68)", rows[0])
        self.assertIn("pyarrow + onnxruntime", rows[1])
        self.assertIn("2.98e-07", rows[1])
        self.assertIn("memory: the MLP job on 5M → 10M rows", rows[-1])

    def test_a_single_run_has_no_spread(self):
        self.assertNotIn("(", report.summary_table(results(1)).splitlines()[2].split("|")[4])

    def test_the_readme_is_rewritten_between_its_markers_only(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "README.md")
            before = "intro\n" + report.README_BEGIN + "\nold table\n" + report.README_END + "\noutro\n"
            with open(path, "w") as f:
                f.write(before)
            self.assertTrue(report.update_readme(results(3), path))
            with open(path) as f:
                text = f.read()
            self.assertTrue(text.startswith("intro\n") and text.endswith(report.README_END + "\noutro\n"))
            self.assertNotIn("old table", text)
            self.assertIn("3 run(s) per contender", text)
            with open(path, "w") as f:
                f.write("no markers")
            self.assertFalse(report.update_readme(results(3), path))

    def test_the_committed_results_make_the_committed_table(self):
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
        with open(os.path.join(root, "benches", "results", "latest.json")) as f:
            latest = json.load(f)
        with open(os.path.join(root, "README.md")) as f:
            readme = f.read()
        self.assertIn(report.summary_table(latest), readme,
                      "the README's table is not the one latest.json makes: run "
                      "benches/run --readme-from benches/results/latest.json")


if __name__ == "__main__":
    unittest.main()
