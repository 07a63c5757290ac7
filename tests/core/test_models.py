"""Model requests: bounded retries of transient errors, terminal errors at once, Retry-After honoured."""

import asyncio

import pytest

from perdure import Agent, ModelHTTPError
from perdure.messages import ModelMessage, ModelResponse, TextPart
from perdure.models import RetryConfig, request_with_retries
from perdure.models.function import AgentInfo, FunctionModel


class Flaky:
    """``send`` for ``request_with_retries``: raises the scripted errors, then answers."""

    def __init__(self, *errors: ModelHTTPError) -> None:
        self.errors = list(errors)
        self.attempts = 0

    async def send(self) -> ModelResponse:
        self.attempts += 1
        if self.errors:
            raise self.errors.pop(0)
        return ModelResponse(parts=[TextPart(content="ok")])


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def transient(status: int = 503, retry_after: float | None = None) -> ModelHTTPError:
    return ModelHTTPError(f"HTTP {status}", status_code=status, transient=True, retry_after=retry_after)


def test_transient_errors_are_retried_with_growing_backoff() -> None:
    flaky = Flaky(transient(), transient(429), transient())
    sleep = FakeSleep()
    config = RetryConfig(max_attempts=4, initial_delay=1.0, multiplier=2.0, max_delay=30.0)
    response = asyncio.run(request_with_retries(flaky.send, config, sleep=sleep))
    assert response.text == "ok"
    assert flaky.attempts == 4
    assert len(sleep.delays) == 3
    # Exponential with jitter in [50%, 100%] of the nominal delay.
    for delay, nominal in zip(sleep.delays, [1.0, 2.0, 4.0], strict=True):
        assert nominal / 2 <= delay <= nominal


def test_attempts_are_bounded() -> None:
    flaky = Flaky(*(transient() for _ in range(10)))
    sleep = FakeSleep()
    with pytest.raises(ModelHTTPError, match="HTTP 503"):
        asyncio.run(request_with_retries(flaky.send, RetryConfig(max_attempts=3), sleep=sleep))
    assert flaky.attempts == 3
    assert len(sleep.delays) == 2


def test_terminal_errors_are_not_retried() -> None:
    flaky = Flaky(ModelHTTPError("bad request", status_code=400, transient=False))
    sleep = FakeSleep()
    with pytest.raises(ModelHTTPError) as info:
        asyncio.run(request_with_retries(flaky.send, RetryConfig(), sleep=sleep))
    assert info.value.status_code == 400
    assert not info.value.transient
    assert flaky.attempts == 1
    assert sleep.delays == []


def test_other_exceptions_are_not_retried() -> None:
    async def send() -> ModelResponse:
        raise ValueError("bug in the model adapter")

    sleep = FakeSleep()
    with pytest.raises(ValueError, match="bug"):
        asyncio.run(request_with_retries(send, RetryConfig(), sleep=sleep))
    assert sleep.delays == []


def test_retry_after_is_honoured_up_to_max_delay() -> None:
    sleep = FakeSleep()
    flaky = Flaky(transient(429, retry_after=7.0), transient(429, retry_after=120.0))
    config = RetryConfig(initial_delay=0.1, max_delay=30.0)
    asyncio.run(request_with_retries(flaky.send, config, sleep=sleep))
    assert sleep.delays == [7.0, 30.0]


def test_backoff_is_capped_at_max_delay() -> None:
    sleep = FakeSleep()
    flaky = Flaky(*(transient() for _ in range(5)))
    config = RetryConfig(max_attempts=6, initial_delay=10.0, multiplier=10.0, max_delay=20.0)
    asyncio.run(request_with_retries(flaky.send, config, sleep=sleep))
    assert all(d <= 20.0 for d in sleep.delays)
    assert sleep.delays[-1] >= 10.0


def test_on_retry_is_told_each_error_and_attempt() -> None:
    seen: list[tuple[int | None, int]] = []
    flaky = Flaky(transient(502), transient(504))
    asyncio.run(
        request_with_retries(
            flaky.send,
            RetryConfig(),
            sleep=FakeSleep(),
            on_retry=lambda e, n: seen.append((e.status_code, n)),
        )
    )
    assert seen == [(502, 1), (504, 2)]


def test_agent_runs_retry_transient_model_errors() -> None:
    errors = [transient(503), transient(500)]

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if errors:
            raise errors.pop(0)
        return ModelResponse(parts=[TextPart(content="made it")])

    agent = Agent(FunctionModel(answer), retry_config=RetryConfig(initial_delay=0.0))
    result = agent.run_sync("x")
    assert result.output == "made it"
    assert result.usage().requests == 1


def test_agent_runs_fail_at_once_on_terminal_model_errors() -> None:
    attempts: list[int] = []

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        attempts.append(1)
        raise ModelHTTPError("invalid api key", status_code=401, transient=False)

    with pytest.raises(ModelHTTPError, match="invalid api key"):
        Agent(FunctionModel(answer)).run_sync("x")
    assert len(attempts) == 1


def test_function_model_needs_a_function() -> None:
    with pytest.raises(TypeError):
        FunctionModel()
