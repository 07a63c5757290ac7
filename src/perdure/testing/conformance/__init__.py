"""The conformance kit: one suite of durable-semantics scenarios that every engine passes.

An engine registers a ``Driver`` (run in child processes: how to run, resume, approve, cancel and inspect a run
on that engine) and the suite drives real subprocesses through it: runs, SIGKILLs at chosen crash points,
resumes in new processes, decisions and cancellations from other processes, with every side effect counted.
"""

from .driver import Driver, outcome_of
from .harness import Harness
from .scenarios import SCENARIOS, Booking, build_agent, effects

__all__ = ["SCENARIOS", "Booking", "Driver", "Harness", "build_agent", "effects", "outcome_of"]
