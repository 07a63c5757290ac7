"""Logfire is an OpenTelemetry SDK: configure it, and perdure's runs appear in Logfire."""

import logfire
from shop import agent

from perdure import DurableAgent, RunWaiting

logfire.configure(send_to_logfire="if-token-present")  # LOGFIRE_TOKEN; without one: the console only

try:
    DurableAgent(agent).run_sync("Refund order 42", run_id="return-4")
except RunWaiting:
    pass
