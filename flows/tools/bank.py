#!/usr/bin/env python3
"""The ledger of bank-transfer.toml's two command tools: `balances` and `transfer`.

Protocol of a Clarion command tool: the call's arguments arrive as one JSON object on
stdin; the result is the one JSON object printed on stdout. A non-zero exit status is a
tool failure, with the reason on stderr.

`balances`: {} -> {"checking": 2400.0, "savings": 9100.0}
`transfer`: {"amount": 200, "from_account": "checking", "to_account": "savings"}
            -> {"status": "done", "reference": "TX-...", "balances": {...}}

A demo ledger with fixed opening balances and no state, so the example runs anywhere; a
real deployment would call the bank's API (and make the transfer idempotent on the
`Idempotency-Key` Clarion sends to HTTP tools).
"""

import hashlib
import json
import sys

OPENING = {"checking": 2400.0, "savings": 9100.0}


def main() -> int:
    action = sys.argv[1] if len(sys.argv) > 1 else ""
    args = json.load(sys.stdin)
    if action == "balances":
        print(json.dumps(OPENING))
        return 0
    if action != "transfer":
        print(f"unknown action {action!r}: use balances or transfer", file=sys.stderr)
        return 2
    amount = float(args["amount"])
    source, target = args["from_account"], args["to_account"]
    if source == target:
        print("the two accounts are the same", file=sys.stderr)
        return 1
    if amount > OPENING[source]:
        print(f"{source} holds only {OPENING[source]:.2f}", file=sys.stderr)
        return 1
    balances = dict(OPENING)
    balances[source] -= amount
    balances[target] += amount
    digest = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:8]
    print(json.dumps({"status": "done", "reference": f"TX-{digest.upper()}", "balances": balances}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
