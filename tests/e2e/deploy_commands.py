"""Prints, as JSON, every scorch command line the deployment files run: the docker-compose.yml
services built from the scorch image and the containers of examples/kubernetes/*.yaml, so the
end-to-end test can check each one against the real command line parser."""
import glob
import json
import os
import shlex
import sys

import yaml

root = sys.argv[1]
commands = []

with open(os.path.join(root, "docker-compose.yml")) as f:
    compose = yaml.safe_load(f)
for name, service in compose["services"].items():
    if service.get("image") == "scorch:latest" and "command" in service:
        commands.append({"where": f"docker-compose.yml:{name}", "argv": service["command"]})

for path in sorted(glob.glob(os.path.join(root, "examples", "kubernetes", "*.yaml"))):
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            spec = (doc or {}).get("spec", {})
            template = spec.get("jobTemplate", {}).get("spec", {}).get("template") or spec.get("template") or {}
            for c in template.get("spec", {}).get("containers", []):
                if not c.get("image", "").startswith("scorch"):
                    continue
                argv = c.get("args", [])
                if c.get("command", [])[:2] == ["/bin/sh", "-c"]:
                    script = argv[0]
                    words = shlex.split(script.replace("$(", "(").replace('"(', '"'))
                    words = words[words.index("scorch") + 1:]
                    argv = words
                commands.append({"where": f"{os.path.basename(path)}:{c['name']}", "argv": argv})

print(json.dumps(commands))
