//! A flow as a diagram: its tools, their parameters and questions, its slots, and how
//! values move between them.
//!
//! [`Graph::of`] turns a validated [`Flow`] into plain data — groups of nodes and the edges
//! between them — and [`Graph::mermaid`] and [`Graph::dot`] render that data as a Mermaid
//! flowchart or Graphviz dot. The data is public so an application (an admin page, an
//! editor plugin) can draw it its own way; `clarion graph` prints the two renderings.
//!
//! What the diagram shows, and what it deliberately leaves out:
//!
//! - **Tools** are groups labelled with their executor (`builtin finance.loan_payment`,
//!   `http GET https://…`, `command python3 …`, `client`). Inside: one node per parameter
//!   (required ones solid, optional ones rounded, `grounded` ones marked, with the `ask`
//!   question when there is one), then one node per `after` rule and the `on_error` rule,
//!   with the context they inject (shortened: the flow file has the full text).
//! - **Flow tools** (`flow = "…"`) get a node naming the flow they hand the thread to,
//!   whether it comes back, and the slots `with` hands over; `returns` is a `sets` edge
//!   to the slot it fills.
//! - **Slots** are cylinders. A parameter bound to a slot is prefilled from it and its
//!   value remembered into it: the `prefills` edge. An `after` rule's `set` is a thick
//!   `sets` edge from the rule to the slot: that is how one tool's result feeds another
//!   tool's parameter (the chaining). A template that reads a slot (the instructions, a
//!   rule, a question) gets a dotted `reads` edge.
//! - Ids are positional (`t0p1` is tool 0's parameter 1) and every list is in file order,
//!   so the output is byte-for-byte stable and diffs well.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::Value;

use crate::Flow;
use crate::model::{AfterRule, Executor, FlowLink, Param, Tool};
use crate::template::{expression_names, template_names};

/// Longest text shown in a label line before it is shortened with `…`.
const MAX_LINE: usize = 72;

/// A flow's diagram as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    /// The flow's name and version.
    pub title: String,
    /// The assistant node: the model and the instructions.
    pub assistant: Node,
    /// The slots, in file order.
    pub slots: Vec<Node>,
    /// One group per tool, in file order.
    pub tools: Vec<Group>,
    /// How values move, in a stable order.
    pub edges: Vec<Edge>,
}

/// A tool: its label and its nodes (parameters, then rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// A stable id (`t0`, `t1`…).
    pub id: String,
    /// Label lines: the tool's name and its executor.
    pub label: Vec<String>,
    /// Parameters, `after` rules, then the `on_error` rule.
    pub nodes: Vec<Node>,
}

/// One box in the diagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// A stable id.
    pub id: String,
    /// What it is (sets its shape).
    pub kind: NodeKind,
    /// Label lines.
    pub label: Vec<String>,
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// The model and its instructions.
    Assistant,
    /// A slot.
    Slot,
    /// A parameter the call needs.
    RequiredParam,
    /// A parameter the call may leave out.
    OptionalParam,
    /// An `after` rule.
    AfterRule,
    /// The `on_error` rule.
    OnError,
    /// The flow a flow tool hands the thread to, and the slots it hands over and back.
    Handoff,
}

/// A connection between two nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// The node the value comes from.
    pub from: String,
    /// The node it goes to.
    pub to: String,
    /// What kind of connection.
    pub kind: EdgeKind,
    /// Text on the edge.
    pub label: String,
}

/// How a value moves along an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeKind {
    /// A slot prefills a parameter (and remembers the value the call ran with).
    Prefills,
    /// An `after` rule sets a slot from the tool's result: the chaining.
    Sets,
    /// A template (instructions, rule, question) reads a slot.
    Reads,
}

impl Graph {
    /// The diagram of `flow`.
    #[must_use]
    pub fn of(flow: &Flow) -> Self {
        let mut builder = Builder {
            slot_ids: flow
                .slots
                .keys()
                .enumerate()
                .map(|(i, name)| (name.clone(), format!("s{i}")))
                .collect(),
            edges: Vec::new(),
        };
        let assistant = Node {
            id: "assistant".to_owned(),
            kind: NodeKind::Assistant,
            label: vec![
                format!("assistant · {}", flow.assistant.model),
                "instructions".to_owned(),
            ],
        };
        builder.reads(
            &slots_read(template_names(&flow.assistant.instructions).ok()),
            &assistant.id,
        );
        let slots = flow
            .slots
            .values()
            .zip(&builder.slot_ids)
            .map(|(slot, (_, id))| Node {
                id: id.clone(),
                kind: NodeKind::Slot,
                label: vec![format!("{} · {}", slot.name, type_of(&slot.schema))],
            })
            .collect();
        let tools = flow
            .tools
            .values()
            .enumerate()
            .map(|(t, tool)| builder.tool(t, tool))
            .collect();
        let title = match &flow.version {
            Some(version) => format!("{} {version}", flow.name),
            None => flow.name.clone(),
        };
        Self {
            title,
            assistant,
            slots,
            tools,
            edges: builder.edges,
        }
    }

    /// A Mermaid flowchart (`flowchart LR`), without the Markdown fence.
    #[must_use]
    pub fn mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        let _ = writeln!(
            out,
            "  %% {}: generated by `clarion graph`; edit the flow, not this diagram",
            self.title
        );
        let _ = writeln!(out, "  {}", mermaid_node(&self.assistant));
        if !self.slots.is_empty() {
            out.push_str("  subgraph slots[\"slots\"]\n    direction TB\n");
            for slot in &self.slots {
                let _ = writeln!(out, "    {}", mermaid_node(slot));
            }
            out.push_str("  end\n");
        }
        for tool in &self.tools {
            let _ = writeln!(
                out,
                "  subgraph {}[\"{}\"]\n    direction TB",
                tool.id,
                mermaid_label(&tool.label)
            );
            for node in &tool.nodes {
                let _ = writeln!(out, "    {}", mermaid_node(node));
            }
            out.push_str("  end\n");
        }
        for edge in &self.edges {
            let arrow = match edge.kind {
                EdgeKind::Prefills => "-->",
                EdgeKind::Sets => "==>",
                EdgeKind::Reads => "-.->",
            };
            let _ = writeln!(
                out,
                "  {} {arrow}|\"{}\"| {}",
                edge.from,
                mermaid_escape(&edge.label),
                edge.to
            );
        }
        out.push_str(
            "  classDef slot fill:#e8f0fe,stroke:#4a6fa5\n  \
             classDef optional stroke-dasharray:4 3\n  \
             classDef rule fill:#f3f8e8,stroke:#6a8f3a\n  \
             classDef error fill:#fdecea,stroke:#b3261e\n",
        );
        for (class, kinds) in [
            ("slot", &[NodeKind::Slot][..]),
            ("optional", &[NodeKind::OptionalParam][..]),
            ("rule", &[NodeKind::AfterRule][..]),
            ("error", &[NodeKind::OnError][..]),
        ] {
            let ids: Vec<&str> = self
                .nodes()
                .filter(|n| kinds.contains(&n.kind))
                .map(|n| n.id.as_str())
                .collect();
            if !ids.is_empty() {
                let _ = writeln!(out, "  class {} {class}", ids.join(","));
            }
        }
        out
    }

    /// A Graphviz dot digraph.
    #[must_use]
    pub fn dot(&self) -> String {
        let mut out = format!(
            "// {}: generated by `clarion graph`; edit the flow, not this diagram\n\
             digraph \"{}\" {{\n  \
             graph [rankdir=LR, fontname=\"Helvetica\", fontsize=12, label=\"{}\", labelloc=t];\n  \
             node [fontname=\"Helvetica\", fontsize=10];\n  \
             edge [fontname=\"Helvetica\", fontsize=9];\n",
            self.title,
            dot_escape(&self.title),
            dot_escape(&self.title)
        );
        let _ = writeln!(out, "  {}", dot_node(&self.assistant));
        if !self.slots.is_empty() {
            out.push_str("  subgraph cluster_slots {\n    label=\"slots\";\n    style=rounded;\n");
            for slot in &self.slots {
                let _ = writeln!(out, "    {}", dot_node(slot));
            }
            out.push_str("  }\n");
        }
        for tool in &self.tools {
            let _ = writeln!(
                out,
                "  subgraph cluster_{} {{\n    label=\"{}\";\n    style=rounded;",
                tool.id,
                dot_label(&tool.label)
            );
            for node in &tool.nodes {
                let _ = writeln!(out, "    {}", dot_node(node));
            }
            out.push_str("  }\n");
        }
        for edge in &self.edges {
            let style = match edge.kind {
                EdgeKind::Prefills => "solid",
                EdgeKind::Sets => "bold",
                EdgeKind::Reads => "dotted",
            };
            let _ = writeln!(
                out,
                "  {} -> {} [style={style}, label=\"{}\"];",
                edge.from,
                edge.to,
                dot_escape(&edge.label)
            );
        }
        out.push_str("}\n");
        out
    }

    /// Every node: the assistant, the slots, then each tool's nodes.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        std::iter::once(&self.assistant)
            .chain(&self.slots)
            .chain(self.tools.iter().flat_map(|t| &t.nodes))
    }
}

/// Collects edges while the tools' nodes are made.
struct Builder {
    /// Slot names and their node ids, in file order.
    slot_ids: Vec<(String, String)>,
    edges: Vec<Edge>,
}

impl Builder {
    fn slot_id(&self, name: &str) -> Option<String> {
        self.slot_ids
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id.clone())
    }

    /// Edges from the slots a template reads to `to`, in slot order.
    fn reads(&mut self, names: &BTreeSet<String>, to: &str) {
        for (_, from) in self.slot_ids.iter().filter(|(n, _)| names.contains(n)) {
            let edge = Edge {
                from: from.clone(),
                to: to.to_owned(),
                kind: EdgeKind::Reads,
                label: "reads".to_owned(),
            };
            if !self.edges.contains(&edge) {
                self.edges.push(edge);
            }
        }
    }

    /// Tool number `t`: its parameters, `after` rules and `on_error` rule.
    fn tool(&mut self, t: usize, tool: &Tool) -> Group {
        let group = format!("t{t}");
        let mut nodes = Vec::new();
        for (p, param) in tool.params.values().enumerate() {
            nodes.push(self.param(format!("{group}p{p}"), param));
        }
        for (r, rule) in tool.after.iter().enumerate() {
            nodes.push(self.after(format!("{group}r{r}"), rule));
        }
        if let Some(on_error) = &tool.on_error {
            let id = format!("{group}e");
            self.reads(&slots_read(template_names(&on_error.inject).ok()), &id);
            nodes.push(Node {
                id,
                kind: NodeKind::OnError,
                label: vec![
                    "on_error".to_owned(),
                    format!("inject: {}", shorten(&on_error.inject)),
                ],
            });
        }
        if let Executor::Flow(link) = &tool.executor {
            nodes.push(self.handoff(format!("{group}h"), link));
        }
        let mut label = vec![tool.name.clone(), executor(tool)];
        if let Some(confirm) = &tool.confirm {
            label.push(format!("confirm: {}", shorten(confirm)));
        }
        Group {
            id: group,
            label,
            nodes,
        }
    }

    /// A thick `sets` edge from node `from` to `slot`, if it is a declared slot.
    fn sets(&mut self, from: &str, slot: &str, label: String) {
        if let Some(to) = self.slot_id(slot) {
            self.edges.push(Edge {
                from: from.to_owned(),
                to,
                kind: EdgeKind::Sets,
                label,
            });
        }
    }

    /// A flow tool's other flow: what `with` hands it, what `returns` brings back.
    fn handoff(&mut self, id: String, link: &FlowLink) -> Node {
        let mut label = vec![if link.comes_back() {
            format!("calls {}, then back", link.flow.name)
        } else {
            format!("hands off to {}", link.flow.name)
        }];
        let mut read = BTreeSet::new();
        for (slot, expression) in &link.with {
            label.push(format!("with {slot} = {}", shorten(expression)));
            read.extend(slots_read(expression_names(expression).ok()));
        }
        self.reads(&read, &id);
        for (own, theirs) in &link.returns {
            label.push(format!("returns {own} ← {}.{theirs}", link.flow.name));
            self.sets(&id, own, format!("returns {own}"));
        }
        Node {
            id,
            kind: NodeKind::Handoff,
            label,
        }
    }

    fn param(&mut self, id: String, param: &Param) -> Node {
        let needed = if param.required {
            "required"
        } else {
            "optional"
        };
        let grounded = if param.grounded { " · grounded" } else { "" };
        let mut label = vec![format!(
            "{}: {} · {needed}{grounded}",
            param.name,
            type_of(&param.schema)
        )];
        if let Some(ask) = &param.ask {
            label.push(format!("ask: {}", shorten(ask)));
        }
        if let Some(slot) = param.slot.as_deref().and_then(|s| self.slot_id(s)) {
            self.edges.push(Edge {
                from: slot,
                to: id.clone(),
                kind: EdgeKind::Prefills,
                label: "prefills".to_owned(),
            });
        }
        if let Some(ask) = &param.ask {
            // A question may read other slots; the bound slot already has its edge.
            let mut read = slots_read(template_names(ask).ok());
            if let Some(slot) = &param.slot {
                read.remove(slot);
            }
            self.reads(&read, &id);
        }
        Node {
            id,
            kind: if param.required {
                NodeKind::RequiredParam
            } else {
                NodeKind::OptionalParam
            },
            label,
        }
    }

    fn after(&mut self, id: String, rule: &AfterRule) -> Node {
        let mut label = vec![match &rule.when {
            Some(when) => format!("after, when {}", shorten(when)),
            None => "after".to_owned(),
        }];
        let mut read = BTreeSet::new();
        if let Some(when) = &rule.when {
            read.extend(slots_read(expression_names(when).ok()));
        }
        if let Some(inject) = &rule.inject {
            label.push(format!("inject: {}", shorten(inject)));
            read.extend(slots_read(template_names(inject).ok()));
        }
        for (slot, expression) in &rule.set {
            label.push(format!("set {slot} = {}", shorten(expression)));
            read.extend(slots_read(expression_names(expression).ok()));
        }
        self.reads(&read, &id);
        for slot in rule.set.keys() {
            self.sets(&id, slot, format!("sets {slot}"));
        }
        Node {
            id,
            kind: NodeKind::AfterRule,
            label,
        }
    }
}

/// `builtin NAME`, `http METHOD URL`, `command ARGV`, `mcp SERVER TOOL`, or `client`.
fn executor(tool: &Tool) -> String {
    match &tool.executor {
        Executor::Builtin(name) => format!("builtin {name}"),
        Executor::Http(http) => {
            let method = serde_json::to_value(http.method)
                .ok()
                .and_then(|v| v.as_str().map(str::to_uppercase))
                .unwrap_or_default();
            shorten(&format!("http {method} {}", http.url))
        }
        Executor::Command(command) => shorten(&format!("command {}", command.argv.join(" "))),
        Executor::Mcp(mcp) => shorten(&format!("mcp {}.{}", mcp.server, mcp.tool)),
        Executor::Flow(link) if link.comes_back() => {
            format!("flow {} (comes back)", link.flow.name)
        }
        Executor::Flow(link) => format!("flow {} (hands off)", link.flow.name),
        Executor::Client => "client (the app runs it)".to_owned(),
    }
}

/// Slot names among the dotted names a template or expression reads.
fn slots_read(names: Option<std::collections::HashSet<String>>) -> BTreeSet<String> {
    names
        .into_iter()
        .flatten()
        .filter_map(|name| {
            let mut parts = name.split('.');
            (parts.next() == Some("slots"))
                .then(|| parts.next().map(ToOwned::to_owned))
                .flatten()
        })
        .collect()
}

/// A short type: `number`, `string`, `low | medium | high`, `array of string`, `any`.
fn type_of(schema: &Value) -> String {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), ToOwned::to_owned))
            .collect();
        return shorten(&values.join(" | "));
    }
    match schema.get("type") {
        Some(Value::String(kind)) if kind == "array" => match schema.get("items") {
            Some(items) => format!("array of {}", type_of(items)),
            None => "array".to_owned(),
        },
        Some(Value::String(kind)) => kind.clone(),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".to_owned(),
    }
}

/// One line, whitespace collapsed, at most [`MAX_LINE`] characters.
fn shorten(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= MAX_LINE {
        line
    } else {
        let cut: String = line.chars().take(MAX_LINE - 1).collect();
        format!("{}…", cut.trim_end())
    }
}

fn mermaid_node(node: &Node) -> String {
    let label = mermaid_label(&node.label);
    match node.kind {
        NodeKind::Assistant => format!("{}([\"{label}\"])", node.id),
        NodeKind::Slot => format!("{}[(\"{label}\")]", node.id),
        NodeKind::RequiredParam => format!("{}[\"{label}\"]", node.id),
        NodeKind::OptionalParam => format!("{}(\"{label}\")", node.id),
        NodeKind::AfterRule | NodeKind::OnError => format!("{}{{{{\"{label}\"}}}}", node.id),
        NodeKind::Handoff => format!("{}>\"{label}\"]", node.id),
    }
}

fn mermaid_label(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| mermaid_escape(l))
        .collect::<Vec<_>>()
        .join("<br/>")
}

/// Mermaid entity codes for the characters that end or confuse a quoted label.
fn mermaid_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '#' => out.push_str("#35;"),
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '`' => out.push_str("#96;"),
            c => out.push(c),
        }
    }
    out
}

fn dot_node(node: &Node) -> String {
    let shape = match node.kind {
        NodeKind::Assistant => "shape=box, style=\"rounded,bold\"",
        NodeKind::Slot => "shape=cylinder, style=filled, fillcolor=\"#e8f0fe\"",
        NodeKind::RequiredParam => "shape=box",
        NodeKind::OptionalParam => "shape=box, style=\"rounded,dashed\"",
        NodeKind::AfterRule => "shape=hexagon, style=filled, fillcolor=\"#f3f8e8\"",
        NodeKind::OnError => "shape=hexagon, style=filled, fillcolor=\"#fdecea\"",
        NodeKind::Handoff => "shape=cds, style=filled, fillcolor=\"#fff4e0\"",
    };
    format!(
        "{} [{shape}, label=\"{}\"];",
        node.id,
        dot_label(&node.label)
    )
}

fn dot_label(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| dot_escape(l))
        .collect::<Vec<_>>()
        .join("\\n")
}

fn dot_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_shortened_on_one_line() {
        assert_eq!(shorten("a\n  b"), "a b");
        let long = "x".repeat(100);
        let short = shorten(&long);
        assert_eq!(short.chars().count(), MAX_LINE);
        assert!(short.ends_with('…'));
    }

    #[test]
    fn labels_cannot_break_out_of_their_quotes() {
        assert_eq!(
            mermaid_escape(r#"a "b" <c> #1"#),
            "a #quot;b#quot; #lt;c#gt; #35;1"
        );
        assert_eq!(dot_escape(r#"say "hi" \o/"#), r#"say \"hi\" \\o/"#);
    }

    #[test]
    fn types_read_shortly() {
        let schema = serde_json::json!({"type": "string", "enum": ["low", "high"]});
        assert_eq!(type_of(&schema), "low | high");
        let schema = serde_json::json!({"type": "array", "items": {"type": "integer"}});
        assert_eq!(type_of(&schema), "array of integer");
        assert_eq!(type_of(&serde_json::json!({})), "any");
    }
}
