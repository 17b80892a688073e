"""cluster.yaml against Ray's own launcher schema, and specs' scaling against its node types."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cluster.resources import ClusterConfigError, check_scaling_fits, load_cluster_config, shapes_from_config
from jobs.cli import main
from jobs.spec import ScalingSpec
from tests.conftest import tiny_spec, write_spec

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


def test_cluster_yaml_passes_rays_schema_and_has_multi_gpu_workers():
    config = load_cluster_config(CLUSTER_YAML)
    shapes = {s.name: s for s in shapes_from_config(config)}
    assert shapes["head"].num_gpus == 0 and shapes["head"].count == 1
    assert max(s.num_gpus for s in shapes.values()) >= 8
    assert any(s.num_gpus == 0 and s.num_cpus > 0 and s.count > 0 for s in shapes.values())  # CPU workers
    raw = yaml.safe_load(CLUSTER_YAML.read_text())
    head_start = " ".join(raw["head_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in head_start and "--dashboard-host=127.0.0.1" in head_start
    assert "~/.ray/auth_token" in raw["file_mounts"]
    # The bucket is named once, and every line that mentions shared storage uses the mount.
    assert CLUSTER_YAML.read_text().count("biomed-checkpoints-change-me") == 1


def test_broken_cluster_yaml_is_rejected_with_the_key(tmp_path):
    raw = yaml.safe_load(CLUSTER_YAML.read_text())
    raw["available_node_types"]["gpu_8x_a100"]["gpus"] = 8
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ClusterConfigError, match="available_node_types.gpu_8x_a100: Additional properties are not allowed \\('gpus' was unexpected\\)"):
        load_cluster_config(tmp_path / "bad.yaml")
    raw = yaml.safe_load(CLUSTER_YAML.read_text())
    raw["available_node_types"]["cpu_worker"]["resources"]["CPU"] = "lots"
    (tmp_path / "bad2.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ClusterConfigError, match="cpu_worker.resources.CPU: 'lots' is not of type 'integer'"):
        load_cluster_config(tmp_path / "bad2.yaml")


@pytest.mark.parametrize(
    ("scaling", "error"),
    [
        ({"num_workers": 2, "use_gpu": True, "gpus_per_worker": 16}, "scaling.gpus_per_worker=16: the largest node of c has 8 GPUs (node type 'gpu_8x_a100')"),
        ({"num_workers": 41, "use_gpu": True, "gpus_per_worker": 1}, "scaling.num_workers=41: c holds at most 40 workers of 1 CPUs + 1 GPUs each"),
        ({"num_workers": 1, "cpus_per_worker": 200}, "scaling.cpus_per_worker=200: the largest node of c has 96 CPUs"),
        ({"num_workers": 1, "use_gpu": True, "cpus_per_worker": 100}, "scaling.cpus_per_worker=100: the largest GPU node of c has 96 CPUs"),
    ],
)
def test_scaling_is_checked_against_node_types(scaling, error):
    shapes = shapes_from_config(load_cluster_config(CLUSTER_YAML))
    with pytest.raises(ValueError) as raised:
        check_scaling_fits(ScalingSpec(**scaling), shapes, source="c")
    assert str(raised.value) == error


def test_validate_with_cluster_config_names_the_field(tmp_path, planted_dir, capsys):
    ok = write_spec(tmp_path / "ok.yaml", tiny_spec(planted_dir, tmp_path / "runs", scaling={"num_workers": 16, "use_gpu": True, "gpus_per_worker": 2}))
    assert main(["validate", str(ok), "--cluster-config", str(CLUSTER_YAML), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["cluster"]["worker_slots"] == 4 * 4  # 4 nodes x 8 GPUs / 2
    bad = write_spec(tmp_path / "bad.yaml", tiny_spec(planted_dir, tmp_path / "runs", scaling={"num_workers": 2, "use_gpu": True, "gpus_per_worker": 12}))
    assert main(["validate", str(bad), "--cluster-config", str(CLUSTER_YAML)]) == 2
    assert "scaling.gpus_per_worker=12: the largest node of cluster config" in capsys.readouterr().err
