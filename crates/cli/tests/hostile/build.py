"""A build command that attacks what targets.json (committed with it) names, and records what happened in the
checkout, where the prober serves it from."""

import json

import attacks

try:
    with open("targets.json") as f:
        targets = json.load(f)
except OSError:
    targets = {}
with open("build-results.json", "w") as f:
    json.dump(attacks.run(targets), f)
