//! Clarion's model providers: the HTTP side of the engine's [`Model`](clarion_engine::model::Model)
//! seam.
//!
//! - [`chat_completions`] and [`responses`]: the two OpenAI protocols, over [`http`] with
//!   [`config`] (base URL, keys, timeouts, retries) and [`sse`] for streaming;
//! - [`select`]: picks the server for a flow (flags, then `[provider]`, then environment);
//! - [`replay`]: records any model's exchanges to a file and replays them offline.

pub mod chat_completions;
pub mod config;
pub mod http;
pub mod replay;
pub mod responses;
pub mod select;
pub mod sse;
