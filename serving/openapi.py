"""The HTTP contract of a deployment: an OpenAPI document exact for the models it serves.

FastAPI documents the generic routes (`/{model}/predict` with every family's request body,
since the version is named at request time). On top of that, every deployed model gets its own
paths (`/drug-reviews/predict`, `/drug-reviews/explain`, `/drug-reviews/info`) with its family's request schema and its
target's response schema; every route documents its error responses with one shared error
schema, and declares the bearer scheme the routes require.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, Field

from serving.schemas import ExplainResponse, explain_request, task_schema

ERRORS = {
    401: "Missing or wrong bearer token.",
    403: "The token may not call this route or model.",
    404: "No such model or version in the registry.",
    408: "The prediction (or explanation) did not finish within the server's deadline.",
    413: "The request body is over the size limit.",
    422: "The body does not fit the model's request schema, or an input fails the model's input check; `detail` names each by its location.",
    503: "The deployment is at capacity (or, for explain, the replica's explanation slots are taken); retry after `Retry-After` seconds.",
}
BEARER = "bearer"


class ErrorItem(BaseModel):
    loc: list[str | int] = Field(description="Where the problem is: body, inputs, the input's index.")
    msg: str = Field(description="What is wrong.")
    type: str = Field(description="A short error type.")


class ErrorResponse(BaseModel):
    detail: str | list[ErrorItem] = Field(description="What went wrong: a sentence, or one item per bad field or input.")


class ModelInfo(BaseModel):
    model: str = Field(description="Registry name.")
    version: int = Field(description="Registry version.")
    task: str = Field(description="Task: a family × a target.")
    labels: list[str] | None = Field(default=None, description="Class labels in id order (classification).")
    selection: dict | None = Field(default=None, description="The validation metric that selected the checkpoint, and its value.")
    val_metrics: dict | None = Field(default=None, description="Validation metrics of the selected checkpoint.")
    test_metrics: dict | None = Field(default=None, description="Test metrics with the main metric's bootstrap interval.")
    baseline: str | None = Field(default=None, description="The classical baseline it was compared with.")
    baseline_test_metrics: dict | None = Field(default=None, description="The baseline's test metrics on the same rows.")
    registered_at: str | None = Field(default=None, description="When the version was registered (UTC).")
    spec_hash: str | None = Field(default=None, description="sha256 of the resolved spec that trained it.")
    data_fingerprint: str | None = Field(default=None, description="sha256 of the data files it was trained on.")
    conformal: dict | None = Field(default=None, description="Its split-conformal calibration: method, calibration rows, and the empirical test coverage at alpha 0.1 and 0.2.")


def error_responses(*statuses: int) -> dict:
    """FastAPI `responses=` for a route: the shared error schema under each status (503 with Retry-After)."""
    out: dict[int | str, Any] = {}
    for status in statuses:
        out[status] = {"model": ErrorResponse, "description": ERRORS[status]}
        if status == 503:
            out[status]["headers"] = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}
        if status == 401:
            out[status]["headers"] = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
    return out


def _schema(model: type[BaseModel], components: dict) -> dict:
    """A model's JSON schema with its nested models moved into the document's components."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation_for(generic: dict, name: str, task: str, components: dict, *, explain: bool = False) -> dict:
    """The generic predict (or explain) operation made exact for one model: no path parameter,
    its family's request body, its target's response."""
    schema = task_schema(task)
    operation = copy.deepcopy(generic)
    verb = "explain" if explain else "predict"
    operation["operationId"] = f"{verb}_{name}"
    operation["summary"] = f"{verb.capitalize()} with {name}"
    operation.pop("parameters", None)
    request, response = (explain_request(schema.request), ExplainResponse) if explain else (schema.request, schema.response)
    content = {"application/json": {"schema": _schema(request, components)}}
    if schema.accepts_files:
        content["multipart/form-data"] = generic["requestBody"]["content"]["multipart/form-data"]
    operation["requestBody"] = {"required": True, "content": content}
    answer = "One explanation per input, in input order." if explain else "One prediction per input, in input order."
    operation["responses"]["200"] = {"description": answer, "content": {"application/json": {"schema": _schema(response, components)}}}
    return operation


def contract(base: dict, models: dict[str, str]) -> dict:
    """The OpenAPI document: FastAPI's `base` for the generic routes, plus explicit paths for
    `models` ({name: task}), the bearer scheme and the shared error schema."""
    doc = copy.deepcopy(base)
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    doc["components"]["securitySchemes"] = {BEARER: {"type": "http", "scheme": "bearer", "description": "The serving token (`$BIOMED_SERVE_TOKEN` or `~/.biomed/serve_token`)."}}
    for path in doc.get("paths", {}).values():
        for operation in path.values():
            operation["security"] = [{BEARER: []}]
    generic_predict = doc["paths"]["/{model}/predict"]["post"]
    generic_explain = doc["paths"]["/{model}/explain"]["post"]
    generic_info = doc["paths"]["/{model}/info"]["get"]
    for name, task in sorted(models.items()):
        doc["paths"][f"/{name}/predict"] = {"post": _operation_for(generic_predict, name, task, components)}
        doc["paths"][f"/{name}/explain"] = {"post": _operation_for(generic_explain, name, task, components, explain=True)}
        info = copy.deepcopy(generic_info)
        info.pop("parameters", None)
        info["operationId"], info["summary"] = f"info_{name}", f"Describe {name}"
        doc["paths"][f"/{name}/info"] = {"get": info}
    return doc
