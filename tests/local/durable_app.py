"""An application module holding a DurableAgent on its own journal (``$PERDURE_APP_JOURNAL``), as users write:
``perdure worker tests.local.durable_app:durable`` serves that journal."""

import os

from perdure import DurableAgent

from .agents import quick

durable = DurableAgent(quick("app"), journal=os.environ["PERDURE_APP_JOURNAL"])
