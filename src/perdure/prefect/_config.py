"""Task configuration: Prefect options for the tasks that execute model requests and tool calls, and the result
stores their records are read from outside a task."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

__all__ = ["ResultStores", "TaskConfig", "local_directory", "storage_option"]


@dataclass(frozen=True, kw_only=True)
class TaskConfig:
    """Prefect options for the tasks of one kind of step. ``None`` means: inherit (from the agent-wide config).

    ::

        PrefectAgent(
            agent,
            task_config=TaskConfig(result_storage="s3-bucket/agent-results"),   # every step
            model_task_config=TaskConfig(timeout_seconds=120),                   # model requests
            tool_task_config={"charge_card": TaskConfig(retries=2, retry_delay_seconds=5)},
        )

    Args:
        retries: how many times Prefect retries the task. A model request already retries transient provider
            errors itself (bounded, see ``Agent(retry_config=...)``); errors that retrying cannot fix (bad
            request, auth) are never retried. A tool is retried when it raises (the last attempt's error is
            recorded and fails the run); ``ModelRetry`` goes back to the model and is never retried here.
            At-most-once tools are never run twice: a retry after a timeout records an unknown outcome.
        retry_delay_seconds: delay before each retry (one number, or one per retry).
        timeout_seconds: the task fails (and may be retried) when it runs longer than this.
        result_storage: where step results are persisted: a directory (``pathlib.Path``), a saved Prefect
            storage block, or its slug (``"s3-bucket/results"``). Every process that resumes a run must reach
            it, so machines that share runs need shared storage. Default: Prefect's default result storage.
    """

    retries: int | None = None
    retry_delay_seconds: float | list[float] | None = None
    timeout_seconds: float | None = None
    result_storage: str | os.PathLike[str] | Any = None

    def merged_over(self, base: TaskConfig) -> TaskConfig:
        """This config's options, with ``base``'s wherever this one has none."""
        updates = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        return replace(base, **updates)


def storage_option(storage: Any) -> Any:
    """The result storage as Prefect options take it: a path, a block slug, or a saved block."""
    from prefect.blocks.core import Block

    if storage is None or isinstance(storage, str | Block):
        return storage
    return Path(os.fspath(storage))


class ResultStores:
    """Result stores over the storages of a run's steps, to read and write records outside a task (cached)."""

    def __init__(self) -> None:
        self._stores: dict[int, Any] = {}

    async def get(self, storage: Any) -> Any:
        from prefect.blocks.core import Block
        from prefect.filesystems import LocalFileSystem
        from prefect.results import ResultStore, aget_default_result_storage
        from prefect.serializers import JSONSerializer

        store = self._stores.get(id(storage))
        if store is None:
            if storage is None:
                block = await aget_default_result_storage()
            elif isinstance(storage, str):
                block = await Block.aload(storage)
            elif isinstance(storage, Block):
                block = storage
            else:  # a directory: a storage block not saved on the server (every process builds its own)
                block = LocalFileSystem(basepath=local_directory(storage))
            store = ResultStore(result_storage=block, serializer=JSONSerializer())
            self._stores[id(storage)] = store
        return store


def local_directory(storage: os.PathLike[str] | str) -> str:
    return str(Path(os.fspath(storage)).expanduser().resolve())
