//! Built-in tools as the loader sees them: names and parameter schemas, nothing else.
//!
//! The engine runs no concrete tool, so it cannot know which built-ins exist or what they
//! take. Whoever does (`clarion-tools`, or an embedding application with its own Rust
//! functions) describes them through [`BuiltinCatalog`] and passes it in [`LoadOptions`].
//! The loader then reports an unknown `builtin` name (`E021`) and a tool whose parameters
//! do not fit the function's (`E022`) at load time, where the author can fix them, instead
//! of as a failed call in front of a user. Without a catalog, `builtin` names are not
//! checked: [`load_file`](super::load_file) and friends behave exactly as before.

use serde_json::Value;

/// The built-in functions available to flows.
pub trait BuiltinCatalog {
    /// Every built-in's name, e.g. `finance.savings_timeline`.
    fn names(&self) -> Vec<String>;

    /// The JSON Schema of a built-in's arguments — an object schema whose `properties` are
    /// its parameters and whose `required` lists those it cannot run without — or `None`
    /// when there is no built-in of that name.
    fn describe(&self, name: &str) -> Option<Value>;

    /// The JSON Schema of a built-in's result, whose `properties` are the fields `after`
    /// rules read as `result.…`; `None` when unknown. Only editors use it (completion and
    /// hover in `clarion lsp`), so a catalog need not say.
    fn describe_result(&self, name: &str) -> Option<Value> {
        let _ = name;
        None
    }
}

/// How to load a flow.
#[derive(Clone, Copy, Default)]
pub struct LoadOptions<'a> {
    /// The built-ins `builtin = "…"` may name; `None` leaves those names unchecked.
    pub builtins: Option<&'a dyn BuiltinCatalog>,
    /// What MCP servers list, instead of the lock file next to the flow
    /// (`clarion validate --connect` passes what the servers answered just now).
    pub mcp_lock: Option<&'a crate::mcp::McpLock>,
}

impl LoadOptions<'_> {
    /// The options for a flow this one hands off to: the same built-ins, and that flow's
    /// own lock file.
    #[must_use]
    pub(crate) fn for_linked(&self) -> Self {
        Self {
            builtins: self.builtins,
            mcp_lock: None,
        }
    }
}

impl std::fmt::Debug for LoadOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("builtins", &self.builtins.map(BuiltinCatalog::names))
            .field("mcp_lock", &self.mcp_lock.is_some())
            .finish()
    }
}
