"""``PerdurePlugin``: what clients and workers need to run ``TemporalAgent``s."""

from __future__ import annotations

import dataclasses
from typing import Any

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.plugin import SimplePlugin
from temporalio.worker import WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from .._exceptions import UserError
from ._agent import TemporalAgent

__all__ = ["PerdurePlugin"]

# perdure's own modules are deterministic given their inputs and hold no workflow state: passing them through
# the sandbox shares one copy (and one agent object per TemporalAgent) instead of re-importing per run.
PASSTHROUGH_MODULES = ("perdure", "opentelemetry")


class PerdurePlugin(SimplePlugin):  # type: ignore[misc]  # temporalio is untyped for mypy (follow_imports=skip)
    """A Temporal client and worker plugin for ``TemporalAgent``\\ s.

    On a worker: registers each agent's built-in workflow and its activities, and passes ``perdure`` through
    the workflow sandbox. On a client: uses pydantic's payload converter (unless you configured another one;
    perdure's own payloads are JSON and work with any converter)::

        client = await Client.connect("localhost:7233", plugins=[PerdurePlugin(support, billing)])
        worker = Worker(client, task_queue="perdure")          # client plugins apply to its workers too

    Give it to the client or to the worker, not both (the worker would register everything twice).
    ``workflows=False`` makes a worker that runs only activities (e.g. tools close to their systems);
    ``activities=False`` one that runs only workflow code.
    """

    def __init__(self, *agents: TemporalAgent[Any, Any], workflows: bool = True, activities: bool = True) -> None:
        names: dict[str, TemporalAgent[Any, Any]] = {}
        for agent in agents:
            if not isinstance(agent, TemporalAgent):
                raise UserError(f"PerdurePlugin takes TemporalAgents, not {type(agent).__name__}")
            if agent.name in names and names[agent.name] is not agent:
                raise UserError(f"two TemporalAgents are named {agent.name!r}; agent names must be unique")
            names[agent.name] = agent
        self.agents: tuple[TemporalAgent[Any, Any], ...] = tuple(names.values())
        workflow_classes = [a.workflow_class for a in self.agents] if workflows else []
        activity_fns = [fn for a in self.agents for fn in a.activities] if activities else []
        super().__init__(
            "perdure.PerdurePlugin",
            data_converter=_data_converter,
            workflows=workflow_classes or None,
            activities=activity_fns or None,
            workflow_runner=_workflow_runner,
        )


def _data_converter(converter: DataConverter | None) -> DataConverter:
    if converter is None or converter is DataConverter.default:
        return pydantic_data_converter
    return converter


def _workflow_runner(runner: WorkflowRunner | None) -> WorkflowRunner:
    if runner is None:
        return SandboxedWorkflowRunner(
            restrictions=SandboxedWorkflowRunner().restrictions.with_passthrough_modules(*PASSTHROUGH_MODULES)
        )
    if isinstance(runner, SandboxedWorkflowRunner):
        return dataclasses.replace(
            runner, restrictions=runner.restrictions.with_passthrough_modules(*PASSTHROUGH_MODULES)
        )
    return runner
