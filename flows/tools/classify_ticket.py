#!/usr/bin/env python3
"""Classifies a support ticket: the `classify_ticket` command tool of support-triage.toml.

Protocol of a Clarion command tool: the call's arguments arrive as one JSON object on
stdin; the result is the one JSON object printed on stdout. A non-zero exit status is a
tool failure (the flow's `on_error` rule then tells the model), with the reason on stderr.

Input:  {"subject": "...", "body": "...", "customer_tier": "free" | "pro" | "enterprise"?}
Output: {"category": "...", "priority": "...", "confidence": 0.0-1.0, "signals": ["..."]}

A keyword classifier with no dependencies, so the example runs anywhere; a real
deployment would call a trained model here.
"""

import json
import sys

CATEGORIES = {
    "billing": ["invoice", "charge", "charged", "refund", "payment", "card", "billing", "price"],
    "account": ["login", "log in", "password", "2fa", "locked", "sso", "account", "email change"],
    "bug": ["error", "crash", "broken", "bug", "500", "fails", "not working", "exception"],
    "feature_request": ["feature", "would be nice", "could you add", "suggestion", "wish"],
    "outage": ["down", "outage", "unavailable", "cannot access", "can't access", "timeout"],
}

URGENT = ["outage", "down for everyone", "data loss", "lost data", "security", "breach", "production"]
HIGH = ["no workaround", "blocked", "cannot", "can't", "urgent", "asap"]
LOW = ["question", "how do i", "cosmetic", "typo", "suggestion"]


def classify(subject: str, body: str, tier: str | None) -> dict:
    text = f"{subject}\n{body}".lower()
    scores = {
        category: sum(text.count(word) for word in words)
        for category, words in CATEGORIES.items()
    }
    best = max(scores, key=lambda c: scores[c])
    total = sum(scores.values())
    if total == 0:
        category, confidence = "other", 0.3
    else:
        category, confidence = best, round(scores[best] / total, 2)

    signals = [word for word in URGENT if word in text]
    if signals or category == "outage":
        priority = "urgent"
    elif any(word in text for word in HIGH):
        priority = "high"
        signals = [word for word in HIGH if word in text]
    elif any(word in text for word in LOW):
        priority = "low"
    else:
        priority = "normal"
    # Enterprise contracts promise faster handling of anything not trivial.
    if tier == "enterprise" and priority == "normal":
        priority = "high"
        signals.append("enterprise tier")

    return {
        "category": category,
        "priority": priority,
        "confidence": confidence,
        "signals": signals,
    }


def main() -> int:
    try:
        args = json.load(sys.stdin)
    except json.JSONDecodeError as error:
        print(f"arguments are not JSON: {error}", file=sys.stderr)
        return 1
    if not isinstance(args, dict) or not isinstance(args.get("subject"), str):
        print("expected an object with a string `subject`", file=sys.stderr)
        return 1
    result = classify(args["subject"], args.get("body") or "", args.get("customer_tier"))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
