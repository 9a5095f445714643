//! The names a flow declares and every place it uses them.
//!
//! A flow has three kinds of name an author renames or looks up: tools, their parameters
//! and slots. Each is declared once (`[tools.plan]`, `[tools.plan.params.goal]`,
//! `[slots.goal]`) and used in known places: a tool's name again in each of its tables'
//! headers; a parameter as `args.goal` in that tool's templates; a slot by a parameter's
//! `slot = "goal"` (which fills it), a rule's `set.goal` (which sets it) and `slots.goal`
//! in any template (which reads it). [`Index::of`] finds all of them from the loader's span
//! index (`clarion_flow::spans`, on whatever part of the text parses) and the header
//! segments of [`syntax::Outline`](crate::syntax::Outline); definition, references, hover,
//! rename and the outline all read that one list.

use std::ops::Range;

use clarion_flow::spans::{self, SpanIndex};
use clarion_flow::template::Scope;
use serde_json::Value;
use toml::de::DeTable;

use crate::syntax::Outline;

/// A name a flow declares.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Symbol {
    /// `[tools.NAME]`.
    Tool(String),
    /// `[tools.TOOL.params.NAME]`.
    Param(String, String),
    /// `[slots.NAME]`.
    Slot(String),
}

/// What a place does with a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Declares it.
    Declares,
    /// Repeats it in a table header (`[tools.plan.http]`).
    Header,
    /// A parameter's `slot = "…"`: fills the parameter from the slot and remembers it.
    Fills,
    /// A rule's `set`: sets the slot.
    Sets,
    /// A template or expression reads it.
    Reads,
}

/// One use of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    /// The name.
    pub symbol: Symbol,
    /// What this place does with it.
    pub role: Role,
    /// The span of the name itself (inside quotes, without `slots.`).
    pub span: Range<usize>,
    /// The JSON pointer of the key or value it is in.
    pub at: String,
}

/// A parsed file: the JSON of what parses, its spans, its headers, every occurrence.
#[derive(Debug)]
pub struct Index {
    /// The document as JSON (what parses of it).
    pub json: Value,
    /// The span of every node.
    pub spans: SpanIndex,
    /// Headers and multi-line strings.
    pub outline: Outline,
    /// Every occurrence of a tool, parameter or slot name.
    pub occurrences: Vec<Occurrence>,
}

/// A template or expression in a flow: where it is, its scope, and its tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSite {
    /// Its scope.
    pub scope: Scope,
    /// `when` and `set` values are expressions; the rest are templates.
    pub expression: bool,
    /// The tool it belongs to.
    pub tool: Option<String>,
}

/// The template site at a pointer (segments), if the value there is a template.
#[must_use]
pub fn template_site(key: &[String]) -> Option<TemplateSite> {
    // `after = [{ … }]` written inline has no element index in the cursor's key path.
    let key: Vec<&str> = key
        .iter()
        .map(String::as_str)
        .filter(|s| s.parse::<usize>().is_err())
        .collect();
    let (scope, expression) = match key.as_slice() {
        ["assistant", "instructions"] => return Some(site(Scope::Instructions, false, None)),
        ["tools", _, "params", _, "ask"]
        | ["tools", _, "params", _, "on_exhausted", "inject" | "end"] => (Scope::Ask, false),
        ["tools", _, "params", _, "invalid"] => (Scope::Invalid, false),
        ["tools", _, "after", "when"] | ["tools", _, "after", "set", _] => (Scope::After, true),
        ["tools", _, "after", "inject"] => (Scope::After, false),
        ["tools", _, "on_error", "inject"] => (Scope::OnError, false),
        ["tools", _, "http", "url"] | ["tools", _, "http", "headers", _] => (Scope::Http, false),
        _ => return None,
    };
    Some(site(scope, expression, Some(key[1].to_owned())))
}

fn site(scope: Scope, expression: bool, tool: Option<String>) -> TemplateSite {
    TemplateSite {
        scope,
        expression,
        tool,
    }
}

impl Index {
    /// Indexes `text` (whatever of it parses).
    #[must_use]
    pub fn of(text: &str) -> Self {
        let (root, _) = DeTable::parse_recoverable(text);
        let (json, spans, _) = spans::to_json(&root);
        let outline = Outline::of(text);
        let mut index = Self {
            json,
            spans,
            outline,
            occurrences: Vec::new(),
        };
        index.find_occurrences(text);
        index
    }

    /// The occurrence whose span holds `offset` (its end included, where a cursor rests
    /// after typing a name).
    #[must_use]
    pub fn at(&self, offset: usize) -> Option<&Occurrence> {
        self.occurrences
            .iter()
            .find(|o| o.span.start <= offset && offset <= o.span.end)
    }

    /// Every occurrence of `symbol`, in file order.
    #[must_use]
    pub fn of_symbol(&self, symbol: &Symbol) -> Vec<&Occurrence> {
        let mut found: Vec<_> = self
            .occurrences
            .iter()
            .filter(|o| &o.symbol == symbol)
            .collect();
        found.sort_by_key(|o| o.span.start);
        found
    }

    /// The names of the object at `pointer` (tools, a tool's parameters, slots).
    #[must_use]
    pub fn names(&self, pointer: &str) -> Vec<String> {
        self.json
            .pointer(pointer)
            .and_then(Value::as_object)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn push(&mut self, symbol: Symbol, role: Role, span: Range<usize>, at: String) {
        if !self.occurrences.iter().any(|o| o.span == span) {
            self.occurrences.push(Occurrence {
                symbol,
                role,
                span,
                at,
            });
        }
    }

    fn key_span(&self, pointer: &str) -> Option<Range<usize>> {
        self.spans.get(pointer).and_then(|node| node.key.clone())
    }

    fn find_occurrences(&mut self, text: &str) {
        for slot in self.names("/slots") {
            let at = spans::pointer(&["slots", &slot]);
            if let Some(span) = self.key_span(&at) {
                self.push(Symbol::Slot(slot), Role::Declares, unquoted(text, span), at);
            }
        }
        for tool in self.names("/tools") {
            let at = spans::pointer(&["tools", &tool]);
            if let Some(span) = self.key_span(&at) {
                self.push(
                    Symbol::Tool(tool.clone()),
                    Role::Declares,
                    unquoted(text, span),
                    at,
                );
            }
            for param in self.names(&spans::pointer(&["tools", &tool, "params"])) {
                let at = spans::pointer(&["tools", &tool, "params", &param]);
                if let Some(span) = self.key_span(&at) {
                    let symbol = Symbol::Param(tool.clone(), param.clone());
                    self.push(symbol, Role::Declares, unquoted(text, span), at.clone());
                }
                let link = format!("{at}/slot");
                if let (Some(slot), Some(node)) = (
                    self.json.pointer(&link).and_then(Value::as_str),
                    self.spans.get(&link),
                ) {
                    let span = unquoted(text, node.value.clone());
                    self.push(Symbol::Slot(slot.to_owned()), Role::Fills, span, link);
                }
            }
            let rules = self
                .json
                .pointer(&spans::pointer(&["tools", &tool, "after"]))
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            for rule in 0..rules {
                let set = spans::pointer(&["tools", &tool, "after", &rule.to_string(), "set"]);
                for slot in self.names(&set) {
                    let at = format!("{set}/{}", spans::escape(&slot));
                    if let Some(span) = self.key_span(&at) {
                        self.push(Symbol::Slot(slot), Role::Sets, unquoted(text, span), at);
                    }
                }
            }
        }
        for header in self.outline.headers.clone() {
            let names = header.names();
            match names.as_slice() {
                ["slots", slot, ..] => {
                    let span = header.keys[1].1.clone();
                    self.push(
                        Symbol::Slot((*slot).to_owned()),
                        Role::Header,
                        span,
                        String::new(),
                    );
                }
                ["tools", tool, rest @ ..] => {
                    let span = header.keys[1].1.clone();
                    let at = spans::pointer(&["tools", tool]);
                    self.push(Symbol::Tool((*tool).to_owned()), Role::Header, span, at);
                    if let ["params", param, ..] = rest {
                        let span = header.keys[3].1.clone();
                        let symbol = Symbol::Param((*tool).to_owned(), (*param).to_owned());
                        let at = spans::pointer(&["tools", tool, "params", param]);
                        self.push(symbol, Role::Header, span, at);
                    }
                }
                _ => {}
            }
        }
        self.find_reads(text);
    }

    /// `slots.x` and `args.x` in every template and expression.
    fn find_reads(&mut self, text: &str) {
        let mut sites: Vec<(String, Range<usize>, TemplateSite)> = Vec::new();
        for (pointer, node) in self.spans.iter() {
            let segments: Vec<String> = pointer
                .split('/')
                .skip(1)
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect();
            if self.json.pointer(pointer).is_some_and(Value::is_string)
                && let Some(site) = template_site(&segments)
            {
                sites.push((pointer.to_owned(), node.value.clone(), site));
            }
        }
        for (pointer, span, site) in sites {
            let Some(raw) = text.get(span.clone()) else {
                continue;
            };
            for (root, name, at) in dotted_names(raw) {
                let start = span.start + at;
                let name_span = start..start + name.len();
                let symbol = match (root, &site.tool) {
                    ("slots", _) => Symbol::Slot(name.to_owned()),
                    ("args", Some(tool)) => Symbol::Param(tool.clone(), name.to_owned()),
                    _ => continue,
                };
                self.push(symbol, Role::Reads, name_span, pointer.clone());
            }
        }
    }
}

/// `(root, name, offset of name)` for every `slots.name` and `args.name` in `raw`, where
/// the root is not itself the end of a longer name (`myslots.x`).
fn dotted_names(raw: &str) -> Vec<(&'static str, &str, usize)> {
    let mut found = Vec::new();
    for root in ["slots", "args"] {
        let needle = format!("{root}.");
        let mut from = 0;
        while let Some(at) = raw[from..].find(&needle) {
            let start = from + at;
            from = start + needle.len();
            let before = raw[..start].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
                continue;
            }
            let name_start = start + needle.len();
            let len = raw[name_start..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(raw.len() - name_start);
            if len > 0 {
                found.push((root, &raw[name_start..name_start + len], name_start));
            }
        }
    }
    found
}

/// A key or string span without its quotes.
fn unquoted(text: &str, span: Range<usize>) -> Range<usize> {
    match text.get(span.clone()) {
        Some(raw)
            if raw.len() >= 2
                && ((raw.starts_with('"') && raw.ends_with('"'))
                    || (raw.starts_with('\'') && raw.ends_with('\''))) =>
        {
            span.start + 1..span.end - 1
        }
        _ => span,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOW: &str = r#"[flow]
name = "x"

[assistant]
model = "m"
instructions = "Goal: {{ slots.goal }}"

[slots.goal]
type = "number"

[tools.plan.params.target]
type = "number"
slot = "goal"
ask = "Still {{ slots.goal }}? {{ args.target }}"

[[tools.plan.after]]
set = { goal = "args.target" }
"#;

    #[test]
    fn every_use_of_a_slot_is_found() {
        let index = Index::of(FLOW);
        let uses: Vec<(Role, &str)> = index
            .of_symbol(&Symbol::Slot("goal".to_owned()))
            .iter()
            .map(|o| (o.role, &FLOW[o.span.clone()]))
            .collect();
        assert_eq!(
            uses,
            [
                (Role::Reads, "goal"),
                (Role::Declares, "goal"),
                (Role::Fills, "goal"),
                (Role::Reads, "goal"),
                (Role::Sets, "goal"),
            ]
        );
        let params = index.of_symbol(&Symbol::Param("plan".to_owned(), "target".to_owned()));
        assert_eq!(params.len(), 3, "{params:?}");
        let tool = index.of_symbol(&Symbol::Tool("plan".to_owned()));
        assert_eq!(tool.len(), 2, "{tool:?}");
    }
}
