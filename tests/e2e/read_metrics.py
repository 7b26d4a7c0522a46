"""Metrics as Prometheus sees them, printed as JSON.

    read_metrics.py FILE      a text-format file parsed by the reference parser (the
                              `prometheus-client` package): [{"name", "labels", "value"}, ...];
                              a file the parser refuses fails the script
    read_metrics.py --api URL a Pushgateway's /api/v1/metrics answer, as it is
"""
import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

if sys.argv[1] == "--api":
    with urllib.request.urlopen(sys.argv[2].rstrip("/") + "/api/v1/metrics", timeout=10) as r:
        json.dump(json.load(r), sys.stdout)
    sys.exit(0)

with open(sys.argv[1]) as f:
    text = f.read()
samples = []
for family in text_string_to_metric_families(text):
    for s in family.samples:
        samples.append({"name": s.name, "labels": s.labels, "value": s.value,
                        "type": family.type})
json.dump(samples, sys.stdout)
