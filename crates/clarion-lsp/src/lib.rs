//! `clarion lsp`: Clarion's language server, so a flow author sees every diagnostic as they
//! type, completes slot, parameter and built-in names, and jumps from a slot to its uses.
//!
//! The server owns no knowledge of the format of its own. Diagnostics are exactly what
//! `clarion validate` (and, for scenario files, `clarion test`) report, because they come
//! from the same loaders — `clarion_flow::load_str_with` and
//! `clarion_testing::scenario::load_str` — run on the editor's unsaved text. Completion and
//! hover read the flow format's generated JSON Schema, so their key names and descriptions
//! are the ones in `schemas/flow.schema.json` and docs/flow-format.md. What the server adds
//! is the editor's side: where the cursor is in a possibly half-typed file
//! ([`syntax`]), which names a file declares and uses ([`symbols`]), and the protocol.
//!
//! It is built on `lsp-server` and `lsp-types`, the synchronous scaffold rust-analyzer runs
//! on: a loop over a channel of messages, no async runtime. Every check takes a few
//! milliseconds on one thread, so there is nothing to gain from tokio and a lot of
//! dependency tree to lose; debouncing is a deadline on that loop's `recv_timeout`.
//!
//! - [`position`]: byte offsets ↔ LSP positions (UTF-8 or UTF-16);
//! - [`document`]: open files, their kind (flow, scenario) and incremental edits;
//! - [`diagnostics`]: the loaders' diagnostics as LSP diagnostics;
//! - [`syntax`]: table headers and the cursor's context in text that may not parse;
//! - [`symbols`]: tools, parameters and slots, where each is declared, set and read;
//! - [`completion`], [`hover`], [`navigate`] (definition, references, outline, rename),
//!   [`actions`] (quick fixes);
//! - [`server`]: the message loop.
//!
//! A session on an in-memory connection (`clarion lsp` runs the same loop on stdio): open
//! a flow with a misspelt key, and the loader's `E004` arrives as a diagnostic.
//!
//! ```
//! use lsp_server::{Connection, Message, Notification, Request, RequestId};
//! use serde_json::json;
//!
//! let (server, client) = Connection::memory();
//! let session = std::thread::spawn(move || clarion_lsp::serve(&server, Default::default()));
//! let request = |id: i32, method: &str, params| {
//!     Message::Request(Request::new(RequestId::from(id), method.to_owned(), params))
//! };
//! let notify = |method: &str, params| Message::Notification(Notification::new(method.to_owned(), params));
//!
//! client.sender.send(request(1, "initialize", json!({ "capabilities": {} })))?;
//! client.receiver.recv()?; // the server's capabilities
//! client.sender.send(notify("initialized", json!({})))?;
//! let text = "[flow]\nname = \"x\"\n[assistant]\nmodel = \"m\"\ninstructions = \"Hi.\"\ntemprature = 0.2\n";
//! client.sender.send(notify("textDocument/didOpen", json!({
//!     "textDocument": { "uri": "file:///tmp/x.toml", "languageId": "toml", "version": 1, "text": text },
//! })))?;
//! let diagnostics = loop {
//!     if let Message::Notification(n) = client.receiver.recv()? {
//!         break n.params["diagnostics"].clone();
//!     }
//! };
//! assert_eq!(diagnostics[0]["code"], "E004");
//! assert_eq!(diagnostics[0]["range"]["start"], json!({ "line": 5, "character": 0 }));
//! assert!(diagnostics[0]["message"].as_str().unwrap_or_default().contains("did you mean `temperature`?"));
//!
//! client.sender.send(request(2, "shutdown", json!(null)))?;
//! client.receiver.recv()?;
//! client.sender.send(notify("exit", json!(null)))?;
//! session.join().expect("the session ends")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod actions;
pub mod completion;
pub mod diagnostics;
pub mod document;
pub mod hover;
pub mod navigate;
pub mod position;
pub mod server;
pub mod symbols;
pub mod syntax;

use std::sync::Arc;
use std::time::Duration;

use clarion_flow::BuiltinCatalog;

pub use server::{run_stdio, serve};

/// How the server checks files.
#[derive(Clone)]
pub struct Options {
    /// The built-ins `builtin = "…"` may name (the CLI passes Clarion's); `None` leaves
    /// them unchecked, as the loader does.
    pub builtins: Option<Arc<dyn BuiltinCatalog + Send + Sync>>,
    /// How long the server waits after a change for the next one before checking: a burst
    /// of changes is checked once. A client may set it with the initialization option
    /// `debounceMs`.
    pub debounce: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            builtins: None,
            debounce: DEFAULT_DEBOUNCE,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("builtins", &self.builtins.as_ref().map(|b| b.names()))
            .field("debounce", &self.debounce)
            .finish()
    }
}

/// The default debounce: long enough to coalesce the changes an editor sends together
/// (a paste, a multi-cursor edit, a format), short enough that a check of a 500-line flow
/// is still published within 20 ms of the last keystroke.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(8);
