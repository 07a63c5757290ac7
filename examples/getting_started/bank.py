"""A stand-in for your payment provider: like Stripe and most payment APIs, it charges once per idempotency key.

The ledger is a JSON file in the working directory, so that several processes (and a crash) share it.
"""

import json
import uuid
from pathlib import Path

LEDGER = Path("bank-ledger.json")


def charge(amount_cents: int, *, idempotency_key: str | None, reference: str) -> str:
    """Charge the card once per key (no key: a new charge every time); a repeated key returns the first charge's
    id. ``reference`` is yours (an order, a run): ``charges(reference)`` finds its charges."""
    charges = json.loads(LEDGER.read_text()) if LEDGER.exists() else {}
    key = idempotency_key or str(uuid.uuid4())
    if key not in charges:
        charges[key] = {"id": f"ch_{len(charges) + 1:04d}", "amount_cents": amount_cents, "reference": reference}
        LEDGER.write_text(json.dumps(charges))
    return str(charges[key]["id"])


def charges(reference: str) -> list[dict[str, int | str]]:
    """The charges made for ``reference``."""
    ledger = json.loads(LEDGER.read_text()) if LEDGER.exists() else {}
    return [c for c in ledger.values() if c["reference"] == reference]
