"""cluster.yaml passes Ray's own cluster-config validation, offline.

Three steps, as ``ray up`` does them minus the cloud: the JSON schema shipped with Ray
(``ray/autoscaler/ray-schema.json``, every error reported), then ``prepare_config`` (merges the
AWS defaults) and ``validate_config`` on the prepared config.  The AWS provider step (boto3 and
credentials) is skipped: ``ray up`` has no dry run.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"


def _load():
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load(CLUSTER_YAML.read_text())


def _schema_errors(config: dict) -> list[str]:
    jsonschema = pytest.importorskip("jsonschema")
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    errors = jsonschema.Draft7Validator(schema).iter_errors(config)
    return [f"{'/'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors]


def test_cluster_yaml_passes_rays_schema_and_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _load()
    assert _schema_errors(config) == []
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)  # raises on an invalid config


def test_cluster_yaml_shape():
    config = _load()
    assert config["provider"]["type"] == "aws"
    nodes = config["available_node_types"]
    head, workers = nodes[config["head_node_type"]], [v for k, v in nodes.items() if k != config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert any(w["resources"].get("GPU", 0) >= 1 for w in workers)
    for worker in workers:
        assert 0 <= worker["min_workers"] <= worker["max_workers"] <= config["max_workers"]
    assert any("pip install" in c and "/home/ray/csrec" in c for c in config["setup_commands"])
    assert config["docker"]["image"].startswith("rayproject/ray:2.60.0") and config["docker"]["container_name"]
    text = CLUSTER_YAML.read_text().lower()
    for secret in ("aws_access_key_id", "aws_secret_access_key", "ssh_private_key", "password", "token:"):
        assert secret not in text


def test_schema_catches_a_broken_config():
    """The check is not vacuous: a misspelt key and a fractional GPU count are reported."""
    config = _load()
    broken = copy.deepcopy(config)
    broken["head_node_typ"] = broken.pop("head_node_type")
    next(v for k, v in broken["available_node_types"].items() if k != "head")["resources"]["GPU"] = 0.5
    errors = _schema_errors(broken)
    assert any("head_node_typ" in e for e in errors) and any("GPU" in e for e in errors)
