//! The codes callers branch on: why a model gave no turn, why a tool call failed, why a run
//! failed or stopped short. Enums, so control flow never matches on strings; each has
//! `as_str()` for the wire (error bodies, tool outputs, stored runs) and a list of all its
//! values, which a test compares with the docs so the two cannot drift.
//!
//! A cut-off turn (the provider's token limit, its content filter) is not an error: it is
//! an [`IncompleteReason`], like the step limit and the loop guard, and the run ends
//! `incomplete` with it, as the Assistants API's `incomplete_details`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! codes {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)*];

            /// The code as it appears on the wire.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }

            /// The value for a wire code, if there is one.
            #[must_use]
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|c| c.as_str() == text)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::parse(&text).ok_or_else(|| {
                    serde::de::Error::custom(format!("unknown {} `{text}`", stringify!($name)))
                })
            }
        }
    };
}

codes! {
    /// Why a model gave no turn.
    ModelErrorKind {
        /// 429, after retries.
        RateLimited = "rate_limited",
        /// 5xx, or the connection could not be made, after retries.
        Unavailable = "unavailable",
        /// A limit ran out: the request's total, a stream's silence or its length.
        Timeout = "timeout",
        /// 400 or 422: the request was refused as malformed.
        BadRequest = "bad_request",
        /// 401: the key is missing or wrong.
        Unauthorized = "unauthorized",
        /// 403.
        Forbidden = "forbidden",
        /// 404: the model or endpoint does not exist.
        NotFound = "not_found",
        /// Another HTTP status that is not a success.
        HttpError = "http_error",
        /// The response is not what the protocol says (not JSON, no choices…).
        InvalidResponse = "invalid_response",
        /// The connection closed, or the stream ended, before the turn was complete.
        StreamInterrupted = "stream_interrupted",
        /// The provider answered with an error object.
        ProviderError = "provider_error",
        /// The provider is configured wrongly (a URL that does not parse…).
        Configuration = "configuration",
        /// A scripted model has no turn left.
        ScriptExhausted = "script_exhausted",
        /// A scripted turn's expectation of the request did not hold.
        ScriptMismatch = "script_mismatch",
        /// A scripted model's lock was poisoned by a panic.
        ScriptPoisoned = "script_poisoned",
        /// A recording could not be written.
        Recording = "recording",
        /// A recording could not be read.
        Replay = "replay",
        /// A recording has no exchange left.
        ReplayExhausted = "replay_exhausted",
        /// The request differs from the recorded one.
        ReplayMismatch = "replay_mismatch",
        /// The model (a test double, or a provider that checks) refused a history as
        /// breaking the pairing rule.
        ProtocolViolation = "protocol_violation",
    }
}

codes! {
    /// How a tool call failed: what the model and `on_error` rules read as `error.kind`.
    ToolErrorKind {
        /// The tool ran and failed.
        Failed = "failed",
        /// The tool, or the service behind it, could not be reached.
        Unavailable = "unavailable",
        /// The tool refused the request (e.g. an HTTP tool's URL the policy forbids).
        Refused = "refused",
        /// The tool answered with something unusable.
        InvalidOutput = "invalid_output",
        /// The call did not finish in time.
        Timeout = "timeout",
        /// The run was cancelled before the call finished.
        Cancelled = "cancelled",
        /// The client did not submit the output in time.
        Expired = "expired",
        /// The model called a tool the flow does not have.
        UnknownTool = "unknown_tool",
        /// The model called a tool this request did not offer: it `follows` a tool that has
        /// not returned before the user's latest message.
        NotOffered = "not_offered",
        /// The model's arguments do not fit the tool's parameters.
        InvalidArguments = "invalid_arguments",
        /// The model repeated a call that had already succeeded in the run (the loop guard).
        RepeatedCall = "repeated_call",
        /// The user declined the call when asked to confirm it (`confirm`); nothing ran.
        Declined = "declined",
        /// Another call of the same turn is waiting for the user's confirmation, and the
        /// user confirms one call at a time; nothing ran.
        AwaitingConfirmation = "awaiting_confirmation",
        /// The user was asked for a parameter `max_asks` times and still gave no usable
        /// value; the call is given up (its `on_exhausted` says what comes next).
        AsksExhausted = "asks_exhausted",
        /// A call of a tool that hands the thread to another flow, made beside another
        /// handoff or beside a call that needs the user (a question, a confirmation):
        /// one thing at a time; nothing was done.
        HandoffDeferred = "handoff_deferred",
    }
}

codes! {
    /// Why a run ended `incomplete`.
    IncompleteReason {
        /// `limits.max_steps` model requests were made.
        MaxSteps = "max_steps",
        /// The provider stopped the turn at its output token limit.
        MaxOutputTokens = "max_output_tokens",
        /// The provider's content filter stopped the turn.
        ContentFilter = "content_filter",
        /// The model repeated a call that had succeeded, after being told (the loop guard).
        RepeatedCall = "repeated_call",
        /// A parameter's `max_asks` ran out and its `on_exhausted` is `end`: the user was
        /// told the flow's message and the run stopped.
        AsksExhausted = "asks_exhausted",
    }
}

/// Why a run failed or expired: `last_error.code`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The model failed after its retries (`model_rate_limited`, `model_timeout`…).
    Model(ModelErrorKind),
    /// `limits.max_consecutive_failures` tool calls failed in a row.
    ToolFailures,
    /// The history broke the pairing rule and was not sent.
    ProtocolViolation,
    /// The instructions failed to render.
    Instructions,
    /// The process stopped during the run (crash recovery).
    Interrupted,
    /// No tool outputs were submitted in time.
    Expired,
    /// A code this build does not know, read from a store another version wrote.
    Other(String),
}

impl ErrorCode {
    /// Every code a run can end with, as on the wire.
    #[must_use]
    pub fn all() -> Vec<Self> {
        let mut all: Vec<Self> = ModelErrorKind::ALL
            .iter()
            .map(|k| Self::Model(*k))
            .collect();
        all.extend([
            Self::ToolFailures,
            Self::ProtocolViolation,
            Self::Instructions,
            Self::Interrupted,
            Self::Expired,
        ]);
        all
    }

    /// The code as it appears on the wire, e.g. `model_timeout`, `tool_failures`.
    #[must_use]
    pub fn as_str(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Self::Model(kind) => format!("model_{}", kind.as_str()).into(),
            Self::ToolFailures => "tool_failures".into(),
            Self::ProtocolViolation => "protocol_violation".into(),
            Self::Instructions => "instructions".into(),
            Self::Interrupted => "interrupted".into(),
            Self::Expired => "expired".into(),
            Self::Other(text) => text.clone().into(),
        }
    }

    /// The code for a wire string (`Other` for one this build does not know).
    #[must_use]
    pub fn parse(text: &str) -> Self {
        if let Some(kind) = text.strip_prefix("model_").and_then(ModelErrorKind::parse) {
            return Self::Model(kind);
        }
        match text {
            "tool_failures" => Self::ToolFailures,
            "protocol_violation" => Self::ProtocolViolation,
            "instructions" => Self::Instructions,
            "interrupted" => Self::Interrupted,
            "expired" => Self::Expired,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self::parse(&String::deserialize(deserializer)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_wire_form() {
        for code in ErrorCode::all() {
            assert_eq!(ErrorCode::parse(&code.as_str()), code);
        }
        for kind in ToolErrorKind::ALL {
            assert_eq!(ToolErrorKind::parse(kind.as_str()), Some(*kind));
        }
        assert_eq!(
            ErrorCode::parse("length"),
            ErrorCode::Other("length".to_owned()),
            "an older build's code is kept, not refused"
        );
        assert_eq!(
            ErrorCode::Model(ModelErrorKind::Timeout).as_str(),
            "model_timeout"
        );
    }
}
