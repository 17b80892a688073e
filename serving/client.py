"""Python client for the inference endpoint, with retries (honouring Retry-After) on back-pressure and on replicas lost mid-request."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

import httpx

from serving.auth import resolve_token


class ServeError(RuntimeError):
    """A non-retryable answer (4xx/5xx) or retries exhausted; `status_code` and `detail` say why."""

    def __init__(self, status_code: int, detail):
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class Client:
    """`Client(url).predict("drug-reviews", ["text", ...])` → the endpoint's JSON answer.

    Inputs are strings (text, DNA, protein, SMILES) or, for tabular and survival models,
    records: `predict("whas500", [{"age": 71, "gender": "1", ...}])`.

    `url` may also be a list, such as the `replica_urls` that `biomed serve deploy` and
    `status` print (each replica's own port, without the proxy hop): requests then go round-robin
    over them, and a refused connection (a replica scaled away) moves on to the next one.
    """

    # 429/503: Serve's back-pressure (with Retry-After). 500/502/504: the replica or proxy died
    # with the request in flight (measured: a node lost under load answered its 2 in-flight
    # requests 500). Predictions have no side effects, so asking again is safe.
    RETRY_STATUSES = (429, 500, 502, 503, 504)

    def __init__(self, url: str | Sequence[str] = "http://127.0.0.1:8000", *, token: str | None = None, max_retries: int = 5, max_backoff_s: float = 10.0, timeout_s: float = 60.0):
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise ValueError("Client needs at least one URL")
        self._token = token or resolve_token()
        self._max_retries = max_retries
        self._max_backoff_s = max_backoff_s
        self._https = [httpx.Client(base_url=u.rstrip("/"), timeout=timeout_s) for u in urls]
        self._turn = itertools.count()

    def close(self) -> None:
        for http in self._https:
            http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _request(self, method: str, path: str, *, model: str, json: dict | None = None) -> dict:
        # The multiplexing header lets Serve route to a replica that already holds the model.
        headers = {"Authorization": f"Bearer {self._token}", "serve_multiplexed_model_id": model}
        for attempt in range(self._max_retries + 1):
            http = self._https[next(self._turn) % len(self._https)]
            try:
                response = http.request(method, path, json=json, headers=headers)
            except httpx.ConnectError:
                if len(self._https) == 1 or attempt == self._max_retries:
                    raise
                continue
            if response.status_code < 400:
                return response.json()
            if response.status_code not in self.RETRY_STATUSES or attempt == self._max_retries:
                try:
                    detail = response.json().get("detail", response.text)
                except ValueError:
                    detail = response.text
                raise ServeError(response.status_code, detail)
            time.sleep(self._retry_after(response, attempt))
        raise AssertionError("unreachable")

    def _retry_after(self, response: httpx.Response, attempt: int) -> float:
        value = response.headers.get("retry-after", "")
        try:
            wait = float(value)
        except ValueError:
            wait = 0.1 * 2**attempt
        return min(max(wait, 0.0), self._max_backoff_s)

    def predict(self, model: str, inputs: list[str] | str | list[dict] | dict) -> dict:
        return self._request("POST", f"/{model}/predict", model=model, json={"inputs": inputs})

    def explain(self, model: str, inputs: list[str] | str | list[dict] | dict, *, target: str | None = None, n_steps: int | None = None) -> dict:
        """Attributions per input (`POST /{model}/explain`): of `target` (a label; default the
        predicted one), with `n_steps` integration steps (default the server's)."""
        body = {"inputs": inputs, **({"target": target} if target is not None else {}), **({"n_steps": n_steps} if n_steps is not None else {})}
        return self._request("POST", f"/{model}/explain", model=model, json=body)

    def info(self, model: str) -> dict:
        return self._request("GET", f"/{model}/info", model=model)
