"""The Ray Serve application: registered checkpoints behind a FastAPI ingress.

(No `from __future__ import annotations` here: FastAPI must see real types on the routes.)

Routes (all but the docs need `Authorization: Bearer <token>`):
    POST /{model}/predict   model = "name" (the version pinned at deploy time) or "name@3"
    POST /{model}/explain   attributions per input (biomed.explain): its own input limit,
                            deadline and concurrency slots, so explanations never starve predict
    GET  /{model}/info
    GET  /v2/models/{model} the model's metadata as KServe's Open Inference Protocol gives it
    GET  /docs, /openapi.json  (the contract: an explicit path per deployed model; serving/openapi.py)

One deployment serves every registered model through Serve's model multiplexing: a replica keeps
up to `max_models_per_replica` loaded (LRU) and the Python client sends the model id header so
the router prefers replicas that already hold the model. Every load runs the golden check: the
replica predicts the task's probe input and must reproduce the prediction the registry recorded.
"""


import asyncio
from dataclasses import dataclass

import numpy as np
import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from ray import serve

from biomed.checkpoint import Predictor
from biomed.devices import inference_device
from biomed.explain import ExplainError, check_target, explain
from biomed.families import register_all
from jobs.registry import REF_PATTERN, RegistryError, parse_ref, registry_for
from serving.auth import authorized
from jobs.serve_spec import ServeSpec
from serving.openapi import ModelInfo, contract, error_responses
from serving.schemas import ExplainResponse, InputError, PredictResponse, openapi_request_body, task_schema

# Probabilities may differ in the last float32 bits across thread counts (reduction order).
GOLDEN_ATOL = 1e-4
# bf16 keeps 8 mantissa bits (about 0.4% per value), fp16 10; a forward pass compounds that, so
# a reduced-precision replica may differ by 2% of the value (at least 0.02 absolute).
GOLDEN_RTOL_REDUCED = 2e-2

app = FastAPI(
    title="biomed inference",
    description="Fine-tuned biomedical models from the biomed registry. Send `Authorization: Bearer <token>`.",
)


class GoldenCheckFailed(RuntimeError):
    """A loaded checkpoint does not reproduce the prediction recorded at registration."""


@dataclass
class LoadedModel:
    name: str
    version: int
    entry: dict
    predictor: Predictor

    @property
    def model_id(self) -> str:
        return f"{self.name}@{self.version}"


def golden_check(model: LoadedModel) -> None:
    probe = model.entry.get("probe")
    if not probe:
        raise GoldenCheckFailed(f"{model.model_id} has no probe prediction in the registry; register it again")
    got = model.predictor.probe(probe["input"])
    expected = np.asarray(probe["prediction"])
    gap = float(np.abs(np.asarray(got["prediction"]) - expected).max())
    # The probe was recorded in fp32; a bf16/fp16 replica is held to its precision's tolerance.
    atol = GOLDEN_ATOL if model.predictor.dtype is None else GOLDEN_RTOL_REDUCED * max(1.0, float(np.abs(expected).max()))
    if got.get("label") != probe.get("label") or gap > atol:
        raise GoldenCheckFailed(f"{model.model_id} predicted {got.get('label', got['prediction'])} (max gap {gap:.2e}) for the probe; the registry recorded {probe.get('label', probe['prediction'])}")


def _openapi_document(models: dict[str, str]) -> dict:
    """The deployment's contract, built once per replica (FastAPI caches it on the app)."""
    if app.openapi_schema is None:
        base = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        app.openapi_schema = contract(base, models)
    return app.openapi_schema


def _error(status: int, detail, headers: dict | None = None) -> HTTPException:
    return HTTPException(status_code=status, detail=detail, headers=headers)


@serve.deployment
@serve.ingress(app)
class ModelServer:
    async def __init__(self, *, storage_path: str, models: list[str], settings: dict, token_sha256: str, families: list | None = None):
        # Families registered at run time on the deploying driver (biomed.families).
        register_all(families)
        self._settings = ServeSpec.model_validate(settings)
        self._registry = registry_for(storage_path)
        self._token_sha256 = token_sha256
        # One replica's threads stay within the CPUs it reserved.
        torch.set_num_threads(max(1, int(self._settings.num_cpus_per_replica)))
        self._pinned: dict[str, int] = {}
        self._resolved: dict[str, str] = {}
        for ref in models:
            name, version = parse_ref(ref)
            self._pinned[name] = version if version is not None else self._registry.get(name)["version"]
        primary = parse_ref(models[0])[0]
        self._primary = f"{primary}@{self._pinned[primary]}"
        deployed = {name: self._registry.get(f"{name}@{version}")["task"] for name, version in self._pinned.items()}
        app.openapi = lambda: _openapi_document(deployed)
        # Serve's multiplexing LRU, sized from the settings (the decorator form fixes it at import).
        async def load(model_id: str) -> LoadedModel:
            return await self._load_model(model_id)

        self.get_model = serve.multiplexed(max_num_models_per_replica=self._settings.max_models_per_replica)(load)
        # Explanations take at most these slots; one more is turned away (503), never queued.
        self._explain_slots = asyncio.Semaphore(self._settings.explain_max_concurrent)
        self._predict_batched.set_max_batch_size(self._settings.max_batch_size)
        self._predict_batched.set_batch_wait_timeout_s(self._settings.batch_wait_timeout_s)
        # Ready only once the deployed models load and pass the golden check.
        for name, version in list(self._pinned.items())[: self._settings.max_models_per_replica]:
            await self.get_model(f"{name}@{version}")

    async def _load_model(self, model_id: str) -> LoadedModel:
        entry = self._registry.get(model_id)
        device = inference_device(self._settings.num_gpus_per_replica)
        predictor = await asyncio.to_thread(
            Predictor, directory=entry["path"], batch_size=self._settings.max_batch_size * 4, device=str(device), precision=self._settings.precision,
        )
        model = LoadedModel(name=entry["name"], version=entry["version"], entry=entry, predictor=predictor)
        await asyncio.to_thread(golden_check, model)
        return model

    async def check_health(self) -> None:
        model = await self.get_model(self._primary)
        await asyncio.to_thread(golden_check, model)

    def _resolve(self, ref: str) -> str:
        # Registered versions never change, so a resolved reference stays valid: no registry
        # read on the request path after the first.
        if ref in self._resolved:
            return self._resolved[ref]
        if not REF_PATTERN.fullmatch(ref):
            raise _error(404, f"no model {ref!r}: a model is 'name' or 'name@version' from the registry")
        name, version = parse_ref(ref)
        try:
            if version is None:
                version = self._pinned.get(name) or self._registry.get(name)["version"]
                self._pinned.setdefault(name, version)
            self._registry.get(f"{name}@{version}")
        except RegistryError as error:
            raise _error(404, str(error)) from None
        self._resolved[ref] = f"{name}@{version}"
        return self._resolved[ref]

    def _authorize(self, request: Request) -> None:
        if not authorized(request.headers.get("authorization"), self._token_sha256):
            raise _error(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})

    async def _read_body(self, request: Request) -> bytes:
        limit = self._settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _error(413, f"request body of {declared} bytes is over the {limit}-byte limit")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _error(413, f"request body is over the {limit}-byte limit")
        return bytes(body)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _predict_batched(self, items: list[tuple[LoadedModel, list]]) -> list[np.ndarray]:
        # One forward pass per model in the batch; requests may name different models.
        by_model: dict[str, list[int]] = {}
        for i, (model, _) in enumerate(items):
            by_model.setdefault(model.model_id, []).append(i)
        out: list[np.ndarray] = [np.empty(0)] * len(items)
        for rows in by_model.values():
            inputs = [x for i in rows for x in items[i][1]]
            predictions = await asyncio.to_thread(items[rows[0]][0].predictor.predict, inputs, validated=True)
            start = 0
            for i in rows:
                out[i] = predictions[start : start + len(items[i][1])]
                start += len(items[i][1])
        return out

    async def _checked(self, model: str, request: Request, *, explain: bool = False):
        """(loaded model, its task schema, the parsed request): auth, body limit, model, inputs."""
        self._authorize(request)
        body = await self._read_body(request)
        loaded = await self.get_model(self._resolve(model))
        schema = task_schema(loaded.entry["task"])
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            parsed = schema.parse_multipart(body, content_type, self._settings, loaded.predictor.validator, explain=explain)
        else:
            parsed = schema.parse(body, self._settings, loaded.predictor.validator, explain=explain)
        return loaded, schema, parsed

    @app.post("/{model}/predict", response_model=PredictResponse, openapi_extra=openapi_request_body(), responses=error_responses(401, 403, 404, 408, 413, 422, 503))
    async def predict(self, model: str, request: Request):
        try:
            loaded, schema, parsed = await self._checked(model, request)
        except InputError as error:
            return JSONResponse(status_code=422, content={"detail": error.errors})
        if self._settings.batching:
            call = self._predict_batched((loaded, parsed.inputs))
        else:
            call = asyncio.to_thread(loaded.predictor.predict, parsed.inputs, validated=True)
        try:
            # The server's own deadline: a client's x-request-timeout-seconds header only
            # reaches the proxy, so it can never lift this one.
            predictions = await asyncio.wait_for(call, timeout=self._settings.request_timeout_s)
        except asyncio.TimeoutError:
            raise _error(408, f"prediction took longer than the server's {self._settings.request_timeout_s} s limit") from None
        return schema.respond(name=loaded.name, version=loaded.version, predictor=loaded.predictor, predictions=predictions, alpha=parsed.alpha)

    @app.post(
        "/{model}/explain", response_model=ExplainResponse, response_model_exclude_unset=True, openapi_extra=openapi_request_body(explain=True),
        responses=error_responses(401, 403, 404, 408, 413, 422, 503),
    )
    async def explain(self, model: str, request: Request):
        try:
            loaded, _, parsed = await self._checked(model, request, explain=True)
            check_target(loaded.predictor, parsed.target)
        except InputError as error:
            return JSONResponse(status_code=422, content={"detail": error.errors})
        except ExplainError as error:
            return JSONResponse(status_code=422, content={"detail": [{"loc": ["body", "target"], "msg": str(error), "type": "value_error"}]})
        if self._explain_slots.locked():
            raise _error(503, f"this replica is running its {self._settings.explain_max_concurrent} explanation(s) at once; retry shortly", {"Retry-After": "1"})
        await self._explain_slots.acquire()
        # The slot is freed when the computation ends, not at the deadline: a thread cannot be
        # cancelled, and a timed-out explanation still holds the CPU it runs on.
        work = asyncio.ensure_future(asyncio.to_thread(
            explain, loaded.predictor, list(parsed.raw), validated=parsed.inputs, target=parsed.target, n_steps=parsed.n_steps, alpha=parsed.alpha,
        ))
        work.add_done_callback(lambda _: self._explain_slots.release())
        try:
            explanations = await asyncio.wait_for(asyncio.shield(work), timeout=self._settings.explain_timeout_s)
        except asyncio.TimeoutError:
            raise _error(408, f"explanation took longer than the server's {self._settings.explain_timeout_s} s limit") from None
        return {"model": loaded.name, "version": loaded.version, "explanations": explanations}

    @app.get("/{model}/info", response_model=ModelInfo, responses=error_responses(401, 403, 404, 503))
    async def info(self, model: str, request: Request) -> dict:
        self._authorize(request)
        entry = self._registry.get(self._resolve(model))
        return {
            "model": entry["name"],
            "version": entry["version"],
            "task": entry["task"],
            "labels": entry["labels"],
            "selection": entry.get("selection"),
            "val_metrics": entry.get("val_metrics"),
            "test_metrics": entry.get("test_metrics"),
            "baseline": entry.get("baseline"),
            "baseline_test_metrics": entry.get("baseline_test_metrics"),
            "registered_at": entry.get("registered_at"),
            "spec_hash": entry.get("spec_hash"),
            "data_fingerprint": entry.get("data_fingerprint"),
            "conformal": entry.get("conformal"),
        }

    @app.get("/v2/models/{model}", responses=error_responses(401, 403, 404, 503))
    async def model_metadata(self, model: str, request: Request) -> dict:
        """The model's metadata as KServe's Open Inference Protocol (v2) gives it."""
        self._authorize(request)
        entry = self._registry.get(self._resolve(model))
        return {
            "name": entry["name"], "versions": [str(entry["version"])], "platform": "pytorch",
            "inputs": [{"name": "inputs", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": "predictions", "datatype": "BYTES", "shape": [-1]}],
        }
