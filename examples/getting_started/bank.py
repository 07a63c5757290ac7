"""A stand-in for your payment provider: it charges once per idempotency key, as Stripe and most banks do.

The ledger is a JSON file in the working directory, so that several processes (and a crash) share it.
"""

import json
from pathlib import Path

LEDGER = Path("bank-ledger.json")


def charge(amount_cents: int, *, idempotency_key: str) -> str:
    """Charge the card once per key; a repeated key returns the first charge's id."""
    charges = json.loads(LEDGER.read_text()) if LEDGER.exists() else {}
    if idempotency_key not in charges:
        charges[idempotency_key] = {"id": f"ch_{len(charges) + 1:04d}", "amount_cents": amount_cents}
        LEDGER.write_text(json.dumps(charges))
    return str(charges[idempotency_key]["id"])


def charges() -> list[dict[str, int | str]]:
    """Every charge made so far."""
    return list(json.loads(LEDGER.read_text()).values()) if LEDGER.exists() else []
