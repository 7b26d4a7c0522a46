"""Validates OpenLineage events (one JSON object per line of a file) with the official Python
client, `openlineage-python`: each event is rebuilt from the client's own classes (generated from
the OpenLineage spec; their validators refuse a run id that is not a UUID, a time that is not
ISO 8601, an unknown event type, a missing required field), every standard facet's _schemaURL
must be the one the client's class declares, and the client's serialisation of the rebuilt
event must equal the event (so no field is misnamed or misplaced). A custom facet must carry
_producer and _schemaURL. Prints a JSON summary per event; any failure exits non-zero.

    validate_lineage.py EVENTS_FILE
"""
import json
import sys

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.generated import (dataset_version_dataset, error_message_run,
                                          output_statistics_output_dataset, schema_dataset)
from openlineage.client.serde import Serde

STANDARD = {
    "schema": lambda f: schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name=x["name"], type=x["type"])
                for x in f.pop("fields")]),
    "version": lambda f: dataset_version_dataset.DatasetVersionDatasetFacet(
        datasetVersion=f.pop("datasetVersion")),
    "outputStatistics": lambda f: output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
        rowCount=f.pop("rowCount"), size=f.pop("size")),
    "errorMessage": lambda f: error_message_run.ErrorMessageRunFacet(
        message=f.pop("message"), programmingLanguage=f.pop("programmingLanguage")),
}


def facets(raw, custom):
    built = {}
    for name, f in (raw or {}).items():
        f = dict(f)
        assert "_producer" in f and "_schemaURL" in f, f"facet {name} lacks _producer/_schemaURL"
        if name not in STANDARD:
            custom[name] = f
            continue
        producer, url = f.pop("_producer"), f.pop("_schemaURL")
        facet = STANDARD[name](f)
        assert not f, f"facet {name}: unexpected fields {sorted(f)}"
        assert url == facet._get_schema(), f"facet {name}: _schemaURL {url} != {facet._get_schema()}"
        facet._producer = producer
        built[name] = facet
    return built


def strip_empty(value):
    if isinstance(value, dict):
        return {k: strip_empty(v) for k, v in value.items() if v not in ({}, [], None)}
    if isinstance(value, list):
        return [strip_empty(v) for v in value]
    return value


summaries = []
with open(sys.argv[1]) as f:
    for line in f:
        event = json.loads(line)
        known = {"eventType", "eventTime", "producer", "schemaURL", "run", "job", "inputs", "outputs"}
        assert set(event) <= known, f"unknown top-level keys {sorted(set(event) - known)}"
        custom = {}
        rebuilt = RunEvent(
            eventType=RunState(event["eventType"]),
            eventTime=event["eventTime"],
            run=Run(runId=event["run"]["runId"], facets=facets(event["run"].get("facets"), custom)),
            job=Job(namespace=event["job"]["namespace"], name=event["job"]["name"]),
            producer=event["producer"],
            inputs=[InputDataset(namespace=d["namespace"], name=d["name"],
                                 facets=facets(d.get("facets"), custom)) for d in event["inputs"]],
            outputs=[OutputDataset(namespace=d["namespace"], name=d["name"],
                                   facets=facets(d.get("facets"), custom),
                                   outputFacets=facets(d.get("outputFacets"), custom))
                     for d in event["outputs"]],
        )
        assert event["schemaURL"] == rebuilt.schemaURL, (event["schemaURL"], rebuilt.schemaURL)
        original = strip_empty(event)
        for name in custom:
            original["run"]["facets"].pop(name, None)
        again = strip_empty(Serde.to_dict(rebuilt))
        assert again == strip_empty(original), f"round trip differs:\n{again}\n{original}"
        summaries.append({
            "eventType": event["eventType"], "runId": event["run"]["runId"],
            "job": event["job"], "inputs": [[d["namespace"], d["name"]] for d in event["inputs"]],
            "outputs": [[d["namespace"], d["name"]] for d in event["outputs"]],
            "facets": sorted({*event["run"].get("facets", {}),
                              *(k for d in event["inputs"] + event["outputs"]
                                for k in {**d.get("facets", {}), **d.get("outputFacets", {})})}),
            "custom": custom,
        })
json.dump(summaries, sys.stdout)
