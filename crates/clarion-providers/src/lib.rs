//! Clarion's model providers: the HTTP side of the engine's [`Model`](clarion_engine::Model)
//! seam.
//!
//! - [`chat_completions`] and [`responses`]: the two OpenAI protocols, over [`http`] with
//!   [`config`] (base URL, keys, timeouts, retries) and [`sse`] for streaming;
//! - [`select`]: picks the server for a flow (flags, then `[provider]`, then environment);
//! - [`replay`]: records any model's exchanges to a file and replays them offline.
//!
//! A provider is a [`Model`](clarion_engine::Model) the engine calls; what it posts is the
//! flow's export plus the thread, so it can be read without a server:
//!
//! ```
//! use clarion_engine::{Message, MessageKind, ModelRequest};
//! use clarion_providers::chat_completions::{ChatCompletions, request_body};
//! use clarion_providers::config::ProviderConfig;
//!
//! let flow = clarion_flow::load_str("hello.toml", r#"
//!     [flow]
//!     name = "hello"
//!     [assistant]
//!     model = "gpt-4.1-mini"
//!     instructions = "Greet people."
//! "#, None).into_result()?;
//! let mut config = ProviderConfig::new("http://127.0.0.1:8089/v1"); // llama.cpp, Ollama, vLLM…
//! config.model = Some("qwen2.5-coder-1.5b".to_owned());
//! let messages = [Message {
//!     id: "msg_1".to_owned(),
//!     run_id: None,
//!     created_at: 0,
//!     kind: MessageKind::User { text: "Hi".to_owned() },
//!     metadata: Default::default(),
//! }];
//! let request = ModelRequest { flow: &flow, instructions: "Greet people.", messages: &messages, history: &messages, words_only: false };
//! let body = request_body(&config, &request);
//! assert_eq!(body["model"], "qwen2.5-coder-1.5b");
//! assert_eq!(body["messages"][1]["content"], "Hi");
//!
//! // The engine takes it as `Arc<dyn Model>`; nothing is sent until a run asks.
//! let _model = ChatCompletions::new(config)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod chat_completions;
pub mod config;
pub mod http;
pub mod replay;
pub mod responses;
pub mod select;
pub mod sse;
