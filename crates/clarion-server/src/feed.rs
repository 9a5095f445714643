//! The engine's own events of each run, for clients that look inside a run — the
//! playground's inspector (`clarion play`) — as a read-only extension of the API:
//! `GET /v1/threads/{thread_id}/runs/{run_id}/events`, server-sent events named
//! `clarion.event` (the engine's [`Event`] as JSON, with `at_ms`, milliseconds since the
//! epoch) and a final `done`.
//!
//! The Assistants API shows a run's outcome (steps, messages); it has no place for the
//! engine's reasons — which slot filled a parameter, which rule injected what, which
//! value was dropped as not stated. Those are [`Event`]s, emitted to the sink a run is
//! driven with; this module tees that sink into a per-run log kept in memory (the latest
//! [`KEPT_RUNS`] runs of this process) and a broadcast channel, so a client that
//! subscribes late gets what it missed and then the rest live. It is off unless the state
//! asks for it ([`crate::AppState::with_event_feed`]): a production server has no use for
//! keeping content in memory, and the route answers 404 there.
//!
//! The tricky part is the seam between the past and the live events: a subscriber copies
//! the log and subscribes to the channel under the same lock the tee appends and sends
//! under, so no event is seen twice or missed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use clarion_engine::{Event, EventSink};
use serde_json::Value;
use tokio::sync::broadcast;

/// How many runs' events are kept: enough to reopen the recent conversations of a
/// session, bounded so a long session does not grow without end.
pub const KEPT_RUNS: usize = 64;

/// One item on the live channel: an event of a run, or the end of the run's task.
#[derive(Debug, Clone)]
pub struct FeedItem {
    /// The run.
    pub run_id: String,
    /// The event as JSON; `None` when the task driving the run ended.
    pub event: Option<Value>,
}

/// What a subscriber gets: the events so far, whether the run's task already ended, and
/// the channel of what follows.
#[derive(Debug)]
pub struct Subscription {
    /// The run's events so far, oldest first.
    pub past: Vec<Value>,
    /// Whether the task driving the run has ended (nothing more will come).
    pub ended: bool,
    /// Events of every run from now on; filter by [`FeedItem::run_id`].
    pub live: broadcast::Receiver<FeedItem>,
}

#[derive(Debug, Default)]
struct RunLog {
    run_id: String,
    events: Vec<Value>,
    ended: bool,
}

/// The per-run event logs and their live channel.
#[derive(Debug)]
pub struct EventFeed {
    logs: Mutex<VecDeque<RunLog>>,
    live: broadcast::Sender<FeedItem>,
}

impl Default for EventFeed {
    fn default() -> Self {
        Self {
            logs: Mutex::new(VecDeque::new()),
            live: broadcast::channel(4096).0,
        }
    }
}

impl EventFeed {
    /// An empty feed.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The index of `run_id`'s log, made (and the oldest dropped) if there is none.
    fn index(logs: &mut VecDeque<RunLog>, run_id: &str) -> usize {
        if let Some(index) = logs.iter().position(|l| l.run_id == run_id) {
            return index;
        }
        if logs.len() >= KEPT_RUNS {
            logs.pop_front();
        }
        logs.push_back(RunLog {
            run_id: run_id.to_owned(),
            ..RunLog::default()
        });
        logs.len() - 1
    }

    /// A task starts driving `run_id` (again, after its outputs were submitted): a
    /// subscriber from now on waits for its events, even before the first one.
    pub fn started(&self, run_id: &str) {
        let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        let index = Self::index(&mut logs, run_id);
        logs[index].ended = false;
    }

    fn push(&self, run_id: &str, event: Option<Value>) {
        let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        let index = Self::index(&mut logs, run_id);
        match &event {
            Some(event) => logs[index].events.push(event.clone()),
            None => logs[index].ended = true,
        }
        // Sent under the lock: see the module docs. No receiver is not an error.
        let _ = self.live.send(FeedItem {
            run_id: run_id.to_owned(),
            event,
        });
    }

    /// Records that the task driving `run_id` ended.
    pub fn ended(&self, run_id: &str) {
        self.push(run_id, None);
    }

    /// The events of `run_id` so far and the channel of what follows. A run this process
    /// never drove (or drove too long ago) has no past and counts as ended.
    #[must_use]
    pub fn subscribe(&self, run_id: &str) -> Subscription {
        let logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        let live = self.live.subscribe();
        match logs.iter().find(|l| l.run_id == run_id) {
            Some(log) => Subscription {
                past: log.events.clone(),
                ended: log.ended,
                live,
            },
            None => Subscription {
                past: Vec::new(),
                ended: true,
                live,
            },
        }
    }

    /// A sink that records every event of `run_id` here and passes it on to `inner`; the
    /// run counts as [`started`](Self::started) from now on.
    #[must_use]
    pub fn tee(self: &Arc<Self>, run_id: &str, inner: Arc<dyn EventSink>) -> Arc<dyn EventSink> {
        self.started(run_id);
        Arc::new(Tee {
            feed: Arc::clone(self),
            run_id: run_id.to_owned(),
            inner,
        })
    }
}

struct Tee {
    feed: Arc<EventFeed>,
    run_id: String,
    inner: Arc<dyn EventSink>,
}

impl EventSink for Tee {
    fn emit(&self, event: &Event) {
        self.inner.emit(event);
        let mut value = serde_json::to_value(event).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            map.insert("at_ms".to_owned(), at.into());
        }
        self.feed.push(&self.run_id, Some(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clarion_engine::NoEvents;

    #[test]
    fn a_late_subscriber_gets_the_past_then_the_rest_live() {
        let feed = Arc::new(EventFeed::new());
        let sink = feed.tee("run_a", Arc::new(NoEvents));
        sink.emit(&Event::TextDelta { text: "Hel".into() });
        let mut subscription = feed.subscribe("run_a");
        assert_eq!(subscription.past.len(), 1);
        assert_eq!(subscription.past[0]["event"], "text_delta");
        assert!(!subscription.ended);
        sink.emit(&Event::TextDelta { text: "lo".into() });
        feed.ended("run_a");
        let next = subscription.live.try_recv().ok();
        assert_eq!(
            next.and_then(|i| i.event).map(|e| e["text"].clone()),
            Some("lo".into())
        );
        assert!(
            subscription
                .live
                .try_recv()
                .is_ok_and(|i| i.event.is_none())
        );
        assert!(feed.subscribe("run_a").ended);
        assert!(feed.subscribe("run_unknown").ended);
        // Outputs submitted: a new task drives the run, and a subscriber waits for it.
        let _sink = feed.tee("run_a", Arc::new(NoEvents));
        let again = feed.subscribe("run_a");
        assert!(!again.ended);
        assert_eq!(again.past.len(), 2);
    }

    #[test]
    fn only_the_latest_runs_are_kept() {
        let feed = Arc::new(EventFeed::new());
        for i in 0..=KEPT_RUNS {
            feed.ended(&format!("run_{i}"));
        }
        assert!(feed.subscribe("run_0").past.is_empty());
        assert_eq!(feed.logs.lock().map_or(0, |l| l.len()), KEPT_RUNS);
    }
}
