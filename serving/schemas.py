"""Request and response schemas per task family, keyed by the task registry's names.

A family plugs in by adding an entry to TASK_SCHEMAS: a pydantic request model, a check of its
inputs against the deployment's limits, and the pydantic response it answers with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serving.config import ServeSpec


class InputError(ValueError):
    """Inputs that fail validation; `errors` are FastAPI-style {"loc", "msg", "type"} items."""

    def __init__(self, errors: list[dict]):
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


class TextPredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: str | list[str] = Field(description="One text or a list of texts to classify.", examples=[["I took this for my migraines and it worked."]])


class LabelPrediction(BaseModel):
    label: str = Field(description="The most probable label.")
    probabilities: dict[str, float] = Field(description="Probability per label.")


class ClassificationResponse(BaseModel):
    model: str = Field(description="Registry name of the model that answered.")
    version: int = Field(description="Registry version of the model that answered.")
    predictions: list[LabelPrediction] = Field(description="One per input, in input order.")


def _pydantic_errors(error: ValidationError) -> list[dict]:
    return [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in error.errors(include_url=False)]


@dataclass(frozen=True)
class TextClassificationSchema:
    request = TextPredictRequest
    response = ClassificationResponse

    def parse(self, body: bytes, limits: ServeSpec) -> list[str]:
        """The texts of a request body, or InputError naming each bad field."""
        try:
            request = TextPredictRequest.model_validate_json(body)
        except ValidationError as error:
            raise InputError(_pydantic_errors(error)) from None
        texts = [request.inputs] if isinstance(request.inputs, str) else list(request.inputs)
        errors = []
        if not texts:
            errors.append({"loc": ["body", "inputs"], "msg": "inputs is empty: send at least one text", "type": "value_error"})
        if len(texts) > limits.max_inputs_per_request:
            errors.append({"loc": ["body", "inputs"], "msg": f"{len(texts)} inputs; at most {limits.max_inputs_per_request} per request", "type": "value_error"})
        for i, text in enumerate(texts):
            loc = ["body", "inputs"] if isinstance(request.inputs, str) else ["body", "inputs", i]
            if not text.strip():
                errors.append({"loc": loc, "msg": "input is empty or whitespace", "type": "value_error"})
            elif len(text) > limits.max_input_chars:
                errors.append({"loc": loc, "msg": f"input has {len(text)} characters; at most {limits.max_input_chars}", "type": "value_error"})
        if errors:
            raise InputError(errors[:20])
        return texts

    def respond(self, *, name: str, version: int, labels: list[str], probs: np.ndarray) -> ClassificationResponse:
        return ClassificationResponse(
            model=name,
            version=version,
            predictions=[
                LabelPrediction(label=labels[int(row.argmax())], probabilities={label: float(p) for label, p in zip(labels, row)})
                for row in probs
            ],
        )


TASK_SCHEMAS = {"text_classification": TextClassificationSchema()}


def openapi_request_body() -> dict:
    """The predict endpoint's documented body: one schema per task family."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"oneOf": [s.request.model_json_schema() for s in TASK_SCHEMAS.values()]}}},
        }
    }
