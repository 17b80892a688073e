"""The HTTP contract, checked against a real deployment: schemathesis generates requests from
the deployment's own /openapi.json (a DNA and a tabular model, two families; predict, explain
and info) and every answer
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
        assert f"/{name}/predict" in paths and f"/{name}/explain" in paths and f"/{name}/info" in paths
    dna = paths["/planted-dna/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    tabular = paths["/planted-tabular/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert (dna, tabular) == ("SequencePredictRequest", "TabularPredictRequest")  # a tabular body no longer fits a DNA model
    explain = paths["/planted-dna/explain"]["post"]
    assert explain["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/SequenceExplainRequest")
    assert explain["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ExplainResponse")
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
    """Valid and invalid requests for every documented operation, from the document itself (a
    few hundred in all, bounded), each answer checked against what the document promises."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

    url = deployment["url"]
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    calls, failures, statuses = 0, [], {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
            @given(case=operation.as_strategy(mode))
            def run(case):
                nonlocal calls
                calls += 1
                try:
                    response = case.call_and_validate(base_url=url, headers=headers, checks=checks, timeout=30)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                except Exception as error:  # noqa: BLE001 (collected: every operation is tried, all failures shown)
                    failures.append(f"{case.method} {case.formatted_path} ({mode.value}): {str(error)[:400]}")

            run()
    print(f"schemathesis: {calls} requests, statuses {dict(sorted(statuses.items()))}")
    assert calls >= 150, calls
    assert not failures, "\n".join(failures[:5])
    assert 200 in statuses and 422 in statuses, statuses  # both sides of the contract were exercised


def test_explain_answers_a_dna_and_a_tabular_model_over_http(deployment):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    dna, tabular = deployment["refs"]
    sequence = "GGCCGGCCTATAATGGCCGGCCGGCC"
    ok = httpx.post(f"{deployment['url']}/{dna}/explain", json={"inputs": [sequence], "target": "motif"}, headers=headers, timeout=120)
    assert ok.status_code == 200, ok.text
    (row,) = ok.json()["explanations"]
    assert [a["span"] for a in row["attributions"]] == [[i, i + 1] for i in range(len(sequence))] and row["method"] == "layer_integrated_gradients"
    record = {"x1": 1.5, "x2": -0.5, "x3": 0.1, "x4": None, "site": "b"}
    ok = httpx.post(f"{deployment['url']}/{tabular}/explain", json={"inputs": record}, headers=headers, timeout=120)
    assert ok.status_code == 200, ok.text
    (row,) = ok.json()["explanations"]
    assert [a["feature"] for a in row["attributions"]] == ["x1", "x2", "x3", "x4", "site"] and row["attributions"][3]["value"] is None
    assert row["convergence_delta"] < 1e-3
