"""Span and metric names perdure emits. Dashboards and alerts are built on them: pinned by a test, never renamed.

GenAI names follow the OpenTelemetry semantic conventions for generative AI; ``perdure.*`` names are ours.
"""

from __future__ import annotations

# --- perdure ---------------------------------------------------------------------------------------------
RUN_ID = "perdure.run_id"
ENGINE = "perdure.engine"
ATTEMPT = "perdure.attempt"
RUN_STATUS = "perdure.run.status"
RUN_PROMPT = "perdure.run.prompt"  # content: only with include_content
RUN_OUTPUT = "perdure.run.output"  # content: only with include_content
STEPS_REPLAYED = "perdure.steps.replayed"
STEPS_EXECUTED = "perdure.steps.executed"
STEP_KEY = "perdure.step.key"
STEP_KIND = "perdure.step.kind"
MODEL_RETRIES = "perdure.model.retries"
RETRY_ATTEMPT = "perdure.retry.attempt"
TOOL_OUTCOME = "perdure.tool.outcome"
TOOL_SIDE_EFFECTS = "perdure.tool.side_effects"
WAIT_REASON = "perdure.wait.reason"
WAIT_OUTCOME = "perdure.wait.outcome"
WAIT_NOTE = "perdure.wait.note"  # content: only with include_content

# --- OpenTelemetry GenAI semantic conventions ----------------------------------------------------------
OPERATION_NAME = "gen_ai.operation.name"
AGENT_NAME = "gen_ai.agent.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_TOP_P = "gen_ai.request.top_p"
REQUEST_SEED = "gen_ai.request.seed"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
INPUT_MESSAGES = "gen_ai.input.messages"  # content: only with include_content
OUTPUT_MESSAGES = "gen_ai.output.messages"  # content: only with include_content
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_TYPE = "gen_ai.tool.type"
TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"  # content: only with include_content
TOOL_CALL_RESULT = "gen_ai.tool.call.result"  # content: only with include_content
TOKEN_TYPE = "gen_ai.token.type"
ERROR_TYPE = "error.type"
HTTP_STATUS_CODE = "http.response.status_code"

# --- metrics ---------------------------------------------------------------------------------------------
METRIC_RUNS = "perdure.runs"
METRIC_ATTEMPTS = "perdure.run.attempts"
METRIC_STEP_DURATION = "perdure.step.duration"
METRIC_MODEL_RETRIES = "perdure.model.retries"
METRIC_APPROVALS_WAITING = "perdure.approvals.waiting"
METRIC_TOKEN_USAGE = "gen_ai.client.token.usage"
