"""Matching of recorded device messages against a scenario action's "when"
filter; shared by jobs_service.py and run_scenario.py (no dependencies)."""


def message_matches(when, record):
    """True if a device message record matches an action's `when` filter.

    `when` keys (all optional): "event" (a service event instead of a
    device message: "http-stalled"), "topic" (the topic after
    $aws/things/<thing>/jobs/, "<jobId>" may be "+"), "status",
    "state" (statusDetails.state).
    """
    if "event" in when:
        # A service event ("http-stalled", ...), for driver actions.
        return record.get("from") == "event" and record.get("event") == when["event"]
    if record.get("from") != "client":
        return False
    rel = record.get("rel_topic", "")
    if "topic" in when:
        want = when["topic"].split("/")
        have = rel.split("/")
        if len(want) != len(have) or any(w not in ("+", h) for w, h in zip(want, have)):
            return False
    payload = record.get("payload") if isinstance(record.get("payload"), dict) else {}
    if "status" in when and payload.get("status") != when["status"]:
        return False
    details = payload.get("statusDetails") or {}
    if "state" in when and details.get("state") != when["state"]:
        return False
    return True
