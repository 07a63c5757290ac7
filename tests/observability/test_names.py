"""Span, attribute and metric names are what dashboards and alerts are built on: pinned, never renamed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import perdure.observability
import perdure.observability.engine
from perdure.observability import _attributes


def test_public_surface() -> None:
    assert perdure.observability.__all__ == ["configure", "configure_agent"]
    assert perdure.observability.engine.__all__ == [
        "Acceptance",
        "ModelStepSpan",
        "RunAttempt",
        "ToolStepSpan",
        "accept_run",
        "accept_trace_context",
        "approval_wait_ended",
        "approval_wait_started",
        "attempt_context",
        "current_attempt",
        "model_step",
        "run_attempt",
        "run_ended",
        "run_started",
        "start_attempt",
        "tool_step",
    ]


def test_attribute_and_metric_names_are_pinned() -> None:
    names = {k: v for k, v in vars(_attributes).items() if k.isupper()}
    assert names == {
        "RUN_ID": "perdure.run_id",
        "ENGINE": "perdure.engine",
        "ATTEMPT": "perdure.attempt",
        "RUN_STATUS": "perdure.run.status",
        "RUN_PROMPT": "perdure.run.prompt",
        "RUN_OUTPUT": "perdure.run.output",
        "STEPS_REPLAYED": "perdure.steps.replayed",
        "STEPS_EXECUTED": "perdure.steps.executed",
        "STEP_KEY": "perdure.step.key",
        "STEP_KIND": "perdure.step.kind",
        "MODEL_RETRIES": "perdure.model.retries",
        "RETRY_ATTEMPT": "perdure.retry.attempt",
        "TOOL_OUTCOME": "perdure.tool.outcome",
        "TOOL_SIDE_EFFECTS": "perdure.tool.side_effects",
        "WAIT_REASON": "perdure.wait.reason",
        "WAIT_OUTCOME": "perdure.wait.outcome",
        "WAIT_NOTE": "perdure.wait.note",
        "OPERATION_NAME": "gen_ai.operation.name",
        "AGENT_NAME": "gen_ai.agent.name",
        "PROVIDER_NAME": "gen_ai.provider.name",
        "REQUEST_MODEL": "gen_ai.request.model",
        "REQUEST_TEMPERATURE": "gen_ai.request.temperature",
        "REQUEST_MAX_TOKENS": "gen_ai.request.max_tokens",
        "REQUEST_TOP_P": "gen_ai.request.top_p",
        "REQUEST_SEED": "gen_ai.request.seed",
        "RESPONSE_MODEL": "gen_ai.response.model",
        "RESPONSE_FINISH_REASONS": "gen_ai.response.finish_reasons",
        "USAGE_INPUT_TOKENS": "gen_ai.usage.input_tokens",
        "USAGE_OUTPUT_TOKENS": "gen_ai.usage.output_tokens",
        "INPUT_MESSAGES": "gen_ai.input.messages",
        "OUTPUT_MESSAGES": "gen_ai.output.messages",
        "TOOL_NAME": "gen_ai.tool.name",
        "TOOL_CALL_ID": "gen_ai.tool.call.id",
        "TOOL_TYPE": "gen_ai.tool.type",
        "TOOL_CALL_ARGUMENTS": "gen_ai.tool.call.arguments",
        "TOOL_CALL_RESULT": "gen_ai.tool.call.result",
        "TOKEN_TYPE": "gen_ai.token.type",
        "ERROR_TYPE": "error.type",
        "HTTP_STATUS_CODE": "http.response.status_code",
        "METRIC_RUNS": "perdure.runs",
        "METRIC_ATTEMPTS": "perdure.run.attempts",
        "METRIC_STEP_DURATION": "perdure.step.duration",
        "METRIC_MODEL_RETRIES": "perdure.model.retries",
        "METRIC_APPROVALS_WAITING": "perdure.approvals.waiting",
        "METRIC_TOKEN_USAGE": "gen_ai.client.token.usage",
    }


def test_import_perdure_does_not_load_opentelemetry() -> None:
    # Plugins off: an installed Logfire registers a pydantic plugin that would load OpenTelemetry by itself.
    code = "import json, sys, perdure, perdure.local; print(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYDANTIC_DISABLE_PLUGINS": "__all__"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    loaded = json.loads(out.stdout)
    assert not [m for m in loaded if m.startswith(("opentelemetry", "perdure.observability"))]
