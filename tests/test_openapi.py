"""The HTTP contract, checked against a real deployment: schemathesis generates requests from
the deployment's own /openapi.json (a DNA and a tabular model, two families) and every answer
must be documented and fit its schema; no request may cause a server error."""

from __future__ import annotations

import os

import httpx
import pytest

TOKEN = "openapi-token-0123456789"


@pytest.fixture(scope="module")
def deployment(family_models):
    from ray import serve

    from cluster.local_head import free_port
    from serving.deploy import deploy

    storage = os.path.dirname(family_models["dna"]["run_path"])
    refs = [f"planted-{f}@{family_models[f]['registered']['version']}" for f in ("dna", "tabular")]
    port = free_port()
    os.environ["BIOMED_SERVE_TOKEN"] = TOKEN
    settings = {"port": port, "num_cpus_per_replica": 0.5, "max_replicas": 1, "max_body_bytes": 65536, "max_inputs_per_request": 8}
    try:
        deploy(refs, storage_path=storage, overrides=settings)
        yield {"url": f"http://127.0.0.1:{port}", "refs": refs}
    finally:
        serve.shutdown()
        os.environ.pop("BIOMED_SERVE_TOKEN", None)


def test_the_document_is_exact_for_the_deployed_models(deployment):
    doc = httpx.get(f"{deployment['url']}/openapi.json", timeout=30).json()
    paths = doc["paths"]
    for name in ("planted-dna", "planted-tabular"):
        assert f"/{name}/predict" in paths and f"/{name}/info" in paths
    dna = paths["/planted-dna/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    tabular = paths["/planted-tabular/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert (dna, tabular) == ("SequencePredictRequest", "TabularPredictRequest")  # a tabular body no longer fits a DNA model
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]["bearer"]["description"]}
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert operation["security"] == [{"bearer": []}], (path, method)
            documented = set(operation["responses"])
            assert {"401", "404", "503"} <= documented, (path, method, documented)
            assert operation["responses"]["503"]["headers"]["Retry-After"]
    predict = paths["/planted-dna/predict"]["post"]["responses"]
    assert {"200", "401", "403", "404", "408", "413", "422", "503"} <= set(predict)


def test_schemathesis_finds_no_server_error_undocumented_status_or_schema_violation(deployment):
    import schemathesis
    from hypothesis import HealthCheck, settings

    schema = schemathesis.openapi.from_url(f"{deployment['url']}/openapi.json")
    checks = [schemathesis.checks.not_a_server_error, schemathesis.specs.openapi.checks.status_code_conformance,
              schemathesis.specs.openapi.checks.response_schema_conformance, schemathesis.specs.openapi.checks.content_type_conformance]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    calls, failures = 0, []
    for operation in schema.get_all_operations():
        operation = operation.ok()

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @schemathesis.given(case=operation.as_strategy())
        def run(case):
            nonlocal calls
            calls += 1
            try:
                case.call_and_validate(headers=headers, checks=checks, timeout=30)
            except Exception as error:  # collected, so every operation is tried
                failures.append(f"{case.method} {case.formatted_path}: {str(error)[:300]}")
                raise

        try:
            run()
        except Exception:
            pass
    assert calls >= 150, calls
    assert not failures, failures[:5]
