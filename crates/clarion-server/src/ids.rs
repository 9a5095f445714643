//! Ids and timestamps on the wire.
//!
//! Threads, messages, runs and calls keep the engine's ids (`thread_…`, `msg_…`, `run_…`,
//! `call_…`). Assistants are the loaded flows, `asst_<flow name>`, stable across restarts.
//! Run steps are derived from the messages a run appended, so a step's id is its message's
//! id with the `step_` prefix — stable, and no second table to keep consistent.

/// `asst_<flow name>`.
#[must_use]
pub fn assistant_id(flow: &str) -> String {
    format!("asst_{flow}")
}

/// The step id for the message that a step produced.
#[must_use]
pub fn step_id(message_id: &str) -> String {
    format!(
        "step_{}",
        message_id.strip_prefix("msg_").unwrap_or(message_id)
    )
}

/// The message id behind a step id.
#[must_use]
pub fn step_message_id(step_id: &str) -> Option<String> {
    step_id
        .strip_prefix("step_")
        .map(|rest| format!("msg_{rest}"))
}

/// Engine milliseconds → API seconds.
#[must_use]
pub fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

/// Now, in milliseconds since the epoch (the engine's unit).
#[must_use]
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_ids_round_trip_to_message_ids() {
        assert_eq!(step_id("msg_abc"), "step_abc");
        assert_eq!(step_message_id("step_abc").as_deref(), Some("msg_abc"));
        assert_eq!(assistant_id("travel-booking"), "asst_travel-booking");
        assert_eq!(secs(1_999), 1);
    }
}
