"""Request and response schemas per task, from the task table: a family × a target.

Every task gets one: its family's request model (a string per input for text, DNA, protein and
SMILES; an object of features per record for tabular; base64 or uploaded files for images), the
checkpoint's own input validator, and the response of its target (label and probabilities,
value, risk score).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from biomed.conformal import DEFAULT_ALPHA
from biomed.explain import AUTO_MAX_STEPS, DEFAULT_STEPS, GAP_TOLERANCE, MAX_STEPS
from biomed.families import families, get_task
from biomed.inputs import InvalidInputs
from jobs.serve_spec import ServeSpec


class InputError(ValueError):
    """Inputs that fail validation; `errors` are FastAPI-style {"loc", "msg", "type"} items."""

    def __init__(self, errors: list[dict]):
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


class LabelPrediction(BaseModel):
    label: str = Field(description="The most probable label.")
    probabilities: dict[str, float] = Field(description="Probability per label.")
    prediction_set: list[str] | None = Field(default=None, description="Conformal prediction set at coverage 1 - alpha, most probable first (when the version was calibrated at registration).")
    alpha: float | None = Field(default=None, description="The miscoverage the set was made at.")


class ValuePrediction(BaseModel):
    value: float = Field(description="Predicted value in the target's units.")
    interval: list[float] | None = Field(default=None, min_length=2, max_length=2, description="Conformal interval [low, high] at coverage 1 - alpha (when the version was calibrated at registration).")
    alpha: float | None = Field(default=None, description="The miscoverage the interval was made at.")


class RiskPrediction(BaseModel):
    risk_score: float = Field(description="Log relative hazard (Cox model): higher means an earlier expected event. Comparable between records of one model, not a probability.")


class _Response(BaseModel):
    model: str = Field(description="Registry name of the model that answered.")
    version: int = Field(description="Registry version of the model that answered.")


class ClassificationResponse(_Response):
    predictions: list[LabelPrediction] = Field(description="One per input, in input order.")


class RegressionResponse(_Response):
    predictions: list[ValuePrediction] = Field(description="One per input, in input order.")


class SurvivalResponse(_Response):
    predictions: list[RiskPrediction] = Field(description="One per input, in input order.")


PredictResponse = ClassificationResponse | RegressionResponse | SurvivalResponse


class ExplainFields(BaseModel):
    """What an explain request adds to its family's predict request."""

    target: str | None = Field(default=None, description="Classification: the label whose score is explained (default: the predicted label); one that is not among the model's labels gets a 422 naming it. Regression and survival models have one output: leave it out.")
    n_steps: int | None = Field(
        default=None, ge=2, le=MAX_STEPS,
        description=f"Integration steps of integrated gradients (not images: occlusion). Omitted: {DEFAULT_STEPS}, doubled up to {AUTO_MAX_STEPS} while the completeness gap (convergence_delta) is over {GAP_TOLERANCE:.0%} of the attributions' total. More steps cost proportionally more compute.",
    )


class Attribution(BaseModel):
    """One unit of the input and its attribution; which keys it has depends on the family."""

    score: float = Field(description="Attribution to the explained output: positive pushes it up, negative down. The scores sum to the output's change from the reference, less convergence_delta.")
    span: list[int] | None = Field(default=None, description="Text, DNA, protein, SMILES: [start, end) character offsets in the input as sent; null for a bond the SMILES leaves implicit.")
    text: str | None = Field(default=None, description="The characters of the span: a word or subword, a base, a residue, an atom, a bond symbol.")
    atom: int | None = Field(default=None, description="SMILES: the atom's index in the input, in order of appearance (0-based).")
    bond: list[int] | None = Field(default=None, description="SMILES: the two atoms' indices of a bond.")
    feature: str | None = Field(default=None, description="Tabular and survival: the column (a categorical column's one-hot group summed).")
    value: float | int | str | bool | None = Field(default=None, description="Tabular and survival: the column's value as checked (null: missing).")
    region: list[int] | None = Field(default=None, description="Images: [top, left, bottom, right) in input pixels of one of the top cells of an 8 × 8 grid.")


class Explanation(BaseModel):
    prediction: dict = Field(description="The prediction, as predict answers it.")
    target: str = Field(description="What is explained: a label, 'value' or 'risk_score'.")
    attributions: list[Attribution] = Field(description="Spans of the input, features, atoms and bonds, or image regions.")
    method: str = Field(description="How the attributions were computed: layer_integrated_gradients (token embeddings), integrated_gradients (graph, tabular features), occlusion (images).")
    n_steps: int | None = Field(default=None, description="The integration steps the explanation used (absent for occlusion).")
    convergence_delta: float | None = Field(description="Integrated gradients' completeness gap: |sum of attributions - (output - reference output)|; null for occlusion, which has no such axiom.")
    heatmap_png: str | None = Field(default=None, description="Images: the positive attributions at the input's resolution, an 8-bit grayscale PNG in base64.")
    heatmap_scale: float | None = Field(default=None, description="Images: the attribution per pixel that 255 in the heat map stands for.")


class ExplainResponse(_Response):
    explanations: list[Explanation] = Field(description="One per input, in input order.")


_EXPLAIN_REQUESTS: dict[type, type] = {}


def explain_request(request: type[BaseModel]) -> type[BaseModel]:
    """A family's explain request body: its predict request plus target and n_steps."""
    if request not in _EXPLAIN_REQUESTS:
        name = request.__name__.replace("Predict", "Explain")
        _EXPLAIN_REQUESTS[request] = type(name, (request, ExplainFields), {"__doc__": f"{request.__doc__ or ''} Plus what to explain."})
    return _EXPLAIN_REQUESTS[request]


def _pydantic_errors(error: ValidationError) -> list[dict]:
    return [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in error.errors(include_url=False)]


@dataclass(frozen=True)
class Parsed:
    """A checked request: its validated inputs and the conformal miscoverage asked for (None: none)."""

    inputs: list
    alpha: float | None
    target: str | None = None  # explain requests only
    n_steps: int | None = None
    raw: tuple = ()  # the inputs as sent: explanations map back onto them (SMILES before canonicalisation)


@dataclass(frozen=True)
class TaskSchema:
    """How one task's requests are read and checked and how its answers are shaped."""

    request: type[BaseModel]
    response: type[_Response]
    # Inputs are files: multipart uploads taken, bounded by the validator's byte limit, not characters.
    accepts_files: bool = False
    # The target has conformal sets or intervals (not survival).
    conformal: bool = True

    def parse(self, body: bytes, limits: ServeSpec, validator, *, explain: bool = False) -> Parsed:
        """Validated, normalised inputs of a request body, or InputError naming each bad field.

        Inputs go through the same validator as the training data (alphabet, SMILES parse,
        feature names and types), recorded with the checkpoint. `explain`: an explain request
        (its own body fields and input limit).
        """
        try:
            request = (explain_request(self.request) if explain else self.request).model_validate_json(body)
        except ValidationError as error:
            raise InputError(_pydantic_errors(error)) from None
        alpha = self._alpha(request)
        most = limits.explain_max_inputs_per_request if explain else limits.max_inputs_per_request
        single = not isinstance(request.inputs, list)
        inputs = [request.inputs] if single else list(request.inputs)

        def loc(i: int) -> list:
            return ["body", "inputs"] if single else ["body", "inputs", i]

        errors = []
        if len(inputs) > most:
            errors.append({"loc": ["body", "inputs"], "msg": f"{len(inputs)} inputs; at most {most} per {'explain ' if explain else ''}request", "type": "value_error"})
        for i, item in enumerate(inputs):
            # Files (images) are bounded by their validator's byte limit, not by characters.
            if isinstance(item, str) and len(item) > limits.max_input_chars and not self.accepts_files:
                errors.append({"loc": loc(i), "msg": f"input has {len(item)} characters; at most {limits.max_input_chars}", "type": "value_error"})
        checked = self.check(inputs, loc, errors, validator)
        return Parsed(checked, alpha, getattr(request, "target", None), getattr(request, "n_steps", None), tuple(inputs))

    def _alpha(self, request: BaseModel) -> float | None:
        if not self.conformal:
            if "alpha" in request.model_fields_set:
                raise InputError([{"loc": ["body", "alpha"], "msg": "no conformal set for a survival risk score (a Cox score has no scale to put an interval on): leave alpha out", "type": "value_error"}])
            return None
        return getattr(request, "alpha", None)

    def parse_multipart(self, body: bytes, content_type: str, limits: ServeSpec, validator, *, explain: bool = False) -> Parsed:
        """Images uploaded as multipart/form-data: every file part, in order, is one input; an
        explain request may add form fields `target` and `n_steps`."""
        if not self.accepts_files:
            raise InputError([{"loc": ["body"], "msg": "multipart/form-data is taken by image models only; send JSON", "type": "value_error"}])
        import email.parser
        import email.policy

        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
        parts, fields = [], {}
        for part in message.iter_parts() if message.is_multipart() else ():
            name = part.get_param("name", header="content-disposition")
            if explain and name in ExplainFields.model_fields:
                fields[name] = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
            else:
                parts.append(part.get_payload(decode=True) or b"")
        try:
            extra = ExplainFields.model_validate(fields)
        except ValidationError as error:
            raise InputError(_pydantic_errors(error)) from None
        most = limits.explain_max_inputs_per_request if explain else limits.max_inputs_per_request
        too_many = [{"loc": ["body"], "msg": f"{len(parts)} images; at most {most} per request", "type": "value_error"}]
        inputs = self.check(parts, lambda i: ["body", "images", i], too_many if len(parts) > most else [], validator)
        return Parsed(inputs, DEFAULT_ALPHA if self.conformal else None, extra.target, extra.n_steps, tuple(parts))

    def check(self, inputs: list, loc, errors: list, validator) -> list:
        """Inputs through the checkpoint's validator; InputError naming each bad one by `loc`."""
        if not inputs:
            errors.append({"loc": ["body", "inputs"], "msg": "inputs is empty: send at least one input", "type": "value_error"})
        if errors:
            raise InputError(errors[:20])
        try:
            return validator.validate(inputs)
        except InvalidInputs as error:
            raise InputError([{"loc": loc(i), "msg": message, "type": "value_error"} for i, message in error.problems[:20]]) from None

    def respond(self, *, name: str, version: int, predictor, predictions: np.ndarray, alpha: float | None = None) -> _Response:
        # The predictor shapes each answer (as `biomed predict` prints it); the response model
        # documents and checks that shape.
        return self.response(model=name, version=version, predictions=[predictor.describe(p, alpha=alpha) for p in predictions])


_RESPONSES = {"classification": ClassificationResponse, "regression": RegressionResponse, "survival": SurvivalResponse}


def task_schema(task_name: str) -> TaskSchema:
    """How a task's requests are read and its answers shaped: its family's request, its target's response."""
    task = get_task(task_name)
    return TaskSchema(
        request=task.family.request, response=_RESPONSES[task.target.kind], accepts_files=task.family.accepts_files,
        conformal=task.target.conformal_method is not None,
    )


def openapi_request_body(*, explain: bool = False) -> dict:
    """The predict (or explain) endpoint's documented body: one schema per family's request."""
    requests = list({id(f.request): f.request for f in families()}.values())
    requests = [explain_request(r) for r in requests] if explain else requests
    form = {"images": {"type": "array", "items": {"type": "string", "format": "binary"}}}
    if explain:
        form |= {name: ExplainFields.model_json_schema()["properties"][name] for name in ExplainFields.model_fields}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"oneOf": [r.model_json_schema() for r in requests]}},
                "multipart/form-data": {"schema": {"type": "object", "properties": form}},
            },
        }
    }
