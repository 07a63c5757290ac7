"""``FallbackModel``: ask the next model when one fails.

::

    from perdure.models import FallbackModel

    model = FallbackModel("openai:gpt-4.1-mini", "anthropic:claude-sonnet-4-5")
    agent = Agent(model, name="support")

Each model first gets its own bounded retries of transient errors (``retry``); a model that still fails, or
fails with a terminal error (a 400 for a prompt too long for it, a 401, a 404 for a model it does not serve),
hands the request to the next one. On a durable engine the answer is recorded with the model step, whichever
model gave it (``ModelResponse.model_name`` says which): a resumed run replays that answer and asks no model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TypeVar

from .._exceptions import ModelHTTPError, UserError
from ..messages import ModelMessage, ModelResponse
from . import (
    Model,
    ModelRequestParameters,
    ModelSettings,
    RetryConfig,
    StreamedResponse,
    infer_model,
    request_with_retries,
)

__all__ = ["FallbackModel"]

_T = TypeVar("_T")
FallbackOn = tuple[type[Exception], ...] | Callable[[Exception], bool]


class FallbackModel(Model):
    """Try ``primary``, then each of ``others`` in order, until one answers.

    Args:
        primary: the model asked first (a ``Model`` or a model string such as ``"openai:gpt-4.1-mini"``).
        others: the models asked next, in order.
        retry: each model's retries of transient errors (timeouts, 429, 5xx) before the next one is asked;
            ``RetryConfig(max_attempts=1)`` falls back at the first failure.
        fallback_on: which errors hand the request on: exception types, or a function of the error
            (default: every ``ModelHTTPError``). Other errors are raised at once.
        sleep: how retries wait (tests pass a function that does not).

    When every model has failed, a terminal ``ModelHTTPError`` lists each model's error: the retries were
    spent already, so the engine does not retry the whole chain again.
    """

    def __init__(
        self,
        primary: Model | str,
        *others: Model | str,
        retry: RetryConfig | None = None,
        fallback_on: FallbackOn = (ModelHTTPError,),
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.models: tuple[Model, ...] = tuple(infer_model(m) for m in (primary, *others))
        if len(self.models) < 2:
            raise UserError("FallbackModel needs at least two models: FallbackModel(primary, secondary, ...)")
        self.retry = retry or RetryConfig()
        self._fallback_on = fallback_on
        self._sleep = sleep

    @property
    def model_name(self) -> str:
        # Part of the agent's fingerprint and of each model step's description: the chain, in order.
        return "fallback:" + ",".join(m.model_name for m in self.models)

    @property
    def system(self) -> str:
        return self.models[0].system

    def __repr__(self) -> str:
        return f"FallbackModel({', '.join(repr(m) for m in self.models)})"

    async def request(
        self,
        messages: list[ModelMessage],
        settings: ModelSettings | None,
        params: ModelRequestParameters,
    ) -> ModelResponse:
        failures: list[tuple[Model, Exception]] = []
        for model in self.models:

            async def send(model: Model = model) -> ModelResponse:
                return await model.request(messages, settings, params)

            try:
                response = await self._with_retries(send)
            except Exception as e:
                if not self._falls_back(e):
                    raise
                failures.append((model, e))
                continue
            if response.model_name is None:
                response = response.model_copy(update={"model_name": model.model_name})
            return response
        raise self._exhausted(failures)

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        settings: ModelSettings | None,
        params: ModelRequestParameters,
    ) -> AsyncIterator[StreamedResponse]:
        """Stream from the first model whose stream opens; an error after events have flowed is raised as is
        (what was streamed cannot be taken back here: the engine's retry starts the request over)."""
        failures: list[tuple[Model, Exception]] = []
        for model in self.models:
            stack = AsyncExitStack()

            async def open_stream(model: Model = model, stack: AsyncExitStack = stack) -> StreamedResponse:
                return await stack.enter_async_context(model.request_stream(messages, settings, params))

            try:
                streamed = await self._with_retries(open_stream)
            except Exception as e:
                await stack.aclose()
                if not self._falls_back(e):
                    raise
                failures.append((model, e))
                continue
            async with stack:
                yield streamed
            return
        raise self._exhausted(failures)

    async def _with_retries(self, send: Callable[[], Awaitable[_T]]) -> _T:
        if self._sleep is None:
            return await request_with_retries(send, self.retry)
        return await request_with_retries(send, self.retry, sleep=self._sleep)

    def _falls_back(self, error: Exception) -> bool:
        if isinstance(self._fallback_on, tuple):
            return isinstance(error, self._fallback_on)
        return self._fallback_on(error)

    def _exhausted(self, failures: list[tuple[Model, Exception]]) -> ModelHTTPError:
        lines = "; ".join(f"{model.model_name}: {error}" for model, error in failures)
        last = failures[-1][1]
        error = ModelHTTPError(
            f"every model of {self.model_name} failed: {lines}",
            status_code=last.status_code if isinstance(last, ModelHTTPError) else None,
            model_name=self.model_name,
            transient=False,
        )
        error.__cause__ = last
        return error
