"""The durable layer, written once for every engine.

``ports`` is what an engine implements (``Backend``, ``StepStore``, ``RunAdmin``); ``base`` is every public method
of a durable agent over a ``Backend``; ``runner`` drives the agent loop over a ``StepStore`` with every replay check;
``codec`` is the one record codec; ``memory`` is an engine in a few hundred lines, the conformance suite's fifth.
"""
