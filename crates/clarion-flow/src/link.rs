//! Flows that hand off to flows: finding, loading and checking the flows that `flow = "…"`
//! tools name.
//!
//! A flow tool names another flow by name (its file is `NAME.toml` beside this one) or by
//! a path ending in `.toml`, relative to this file. The loader loads each named flow with
//! the same options and checks what only the two files together can say: the flow exists
//! and loads (E035, E037), no chain of handoffs leads back to a flow already on it (E038),
//! and `with` and `returns` name slots the flows declare, with types that fit (E039, E040).
//! A flow's own problems stay in its own file: a flow that hands off to a broken one
//! reports it once, at its `flow = "…"`, and `clarion validate` on the other shows why.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::Value;

use crate::catalog::LoadOptions;
use crate::check::Checker;
use crate::check::params::{declared_types, overlaps};
use crate::diagnostic::{Diagnostic, DiagnosticKind};
use crate::model::Flow;
use crate::spans::pointer;
use crate::spec::ToolSpec;
use crate::suggest;

/// The flows being loaded, outermost first: (the file, canonical when it exists, and the
/// flow's name). A flow tool naming one of them closes a cycle.
pub(crate) type Chain = [(PathBuf, String)];

/// Loads and checks the flows this file's tools hand off to; the loaded flows by tool.
/// Diagnostics go to `checker`; a tool whose flow did not load is left out.
pub(crate) fn resolve(
    checker: &mut Checker<'_>,
    options: &LoadOptions<'_>,
    chain: &Chain,
) -> IndexMap<String, Arc<Flow>> {
    let file = checker.file;
    let dir = checker
        .base_dir
        .map(Path::to_path_buf)
        .or_else(|| checker.source.path().parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let me = (own_path(checker, &dir), file.flow.name.clone());
    let mut chain: Vec<(PathBuf, String)> = chain.to_vec();
    chain.push(me);
    let mut linked = IndexMap::new();
    for (tool, spec) in &file.tools {
        let Some(name) = &spec.flow else {
            keys_without_flow(checker, tool, spec);
            continue;
        };
        let at = pointer(&["tools", tool, "flow"]);
        if checker.broken.covers(&at) {
            continue;
        }
        if let Some(flow) = load(checker, options, &chain, &dir, tool, name) {
            mappings(checker, tool, spec, &flow);
            linked.insert(tool.clone(), Arc::new(flow));
        }
    }
    linked
}

/// This file's path as the chain records it.
fn own_path(checker: &Checker<'_>, dir: &Path) -> PathBuf {
    let path = checker.source.path();
    let path = match (checker.base_dir, path.file_name()) {
        (Some(_), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    };
    path.canonicalize().unwrap_or(path)
}

/// Whether `flow = "…"` gives a flow's name rather than a path ending in `.toml`.
fn by_name(flow: &str) -> bool {
    !Path::new(flow)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
}

/// Where `flow = "NAME"` is: `NAME.toml` beside the file, or the `.toml` path as written.
fn target_path(dir: &Path, name: &str) -> PathBuf {
    if by_name(name) {
        dir.join(format!("{name}.toml"))
    } else {
        dir.join(name)
    }
}

/// The flow a tool names, loaded; `None` (reported) when it is missing, broken, another
/// flow than named, or on the chain already.
fn load(
    checker: &mut Checker<'_>,
    options: &LoadOptions<'_>,
    chain: &Chain,
    dir: &Path,
    tool: &str,
    name: &str,
) -> Option<Flow> {
    let at = pointer(&["tools", tool, "flow"]);
    let path = target_path(dir, name);
    if !path.is_file() {
        // Suggest in the form written: a name, or a path in the same folder.
        let (folder, written) = match name.rfind('/') {
            Some(slash) if !by_name(name) || name.contains('/') => {
                (&name[..=slash], name[slash + 1..].trim_end_matches(".toml"))
            }
            _ => ("", name),
        };
        let suffix = if by_name(name) { "" } else { ".toml" };
        let beside = flows_beside(path.parent().unwrap_or(dir));
        let help = match suggest::closest(written, beside.iter().map(String::as_str)) {
            Some(close) => format!("did you mean `{folder}{close}{suffix}`?"),
            None if beside.is_empty() => {
                "put the flow's file beside this one, or give its path ending in `.toml`".to_owned()
            }
            None => format!("the flows beside this file: {}", suggest::list(&beside)),
        };
        checker.report(
            Diagnostic::new(
                DiagnosticKind::UnknownFlow {
                    tool: tool.to_owned(),
                    flow: name.to_owned(),
                    reason: format!("there is no file `{}`", path.display()),
                },
                checker.value(&at),
            )
            .with_label("no such flow")
            .with_help(help),
        );
        return None;
    }
    let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
    if let Some(start) = chain.iter().position(|(p, _)| *p == canonical) {
        let mut names: Vec<&str> = chain[start..].iter().map(|(_, n)| n.as_str()).collect();
        names.push(&chain[start].1);
        checker.report(
            Diagnostic::new(
                DiagnosticKind::HandoffCycle {
                    tool: tool.to_owned(),
                    cycle: names.join(" → "),
                },
                checker.value(&at),
            )
            .with_label("this flow is already on the way here")
            .with_help(
                "a flow may not hand off, directly or through others, to a flow that hands \
                 off to it; to go back, let the other flow `returns` instead",
            ),
        );
        return None;
    }
    let report = crate::load::load_file_in(&path, &options.for_linked(), chain);
    let Some(flow) = report.flow else {
        checker.report(
            Diagnostic::new(
                DiagnosticKind::LinkedFlowInvalid {
                    tool: tool.to_owned(),
                    flow: name.to_owned(),
                    errors: report.error_count(),
                },
                checker.value(&at),
            )
            .with_label("this flow does not load")
            .with_help(format!(
                "run `clarion validate {}` for its errors",
                path.display()
            )),
        );
        return None;
    };
    if by_name(name) && flow.name != name {
        checker.report(
            Diagnostic::new(
                DiagnosticKind::UnknownFlow {
                    tool: tool.to_owned(),
                    flow: name.to_owned(),
                    reason: format!("`{}` is the flow `{}`", path.display(), flow.name),
                },
                checker.value(&at),
            )
            .with_label("another flow's file")
            .with_help(format!(
                "name the flow as its `[flow] name` says (`{}`), or rename the file",
                flow.name
            )),
        );
        return None;
    }
    Some(flow)
}

/// The `*.toml` names beside a flow, for "did you mean".
fn flows_beside(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
        .collect();
    names.sort();
    names
}

/// `with` and `returns` belong on a tool with `flow`.
fn keys_without_flow(checker: &mut Checker<'_>, tool: &str, spec: &ToolSpec) {
    for (key, set) in [
        ("with", !spec.with.is_empty()),
        ("returns", !spec.returns.is_empty()),
    ] {
        if set {
            checker.report(
                Diagnostic::new(
                    DiagnosticKind::HandoffKeyWithoutFlow {
                        tool: tool.to_owned(),
                        key: key.to_owned(),
                    },
                    checker.key(&pointer(&["tools", tool, key])),
                )
                .with_label("only a flow tool hands slots over")
                .with_help(format!(
                    "add `flow = \"NAME\"` to hand the thread to another flow, or remove `{key}`"
                )),
            );
        }
    }
}

/// `with` fills the other flow's slots; `returns` fills this flow's from the other's.
fn mappings(checker: &mut Checker<'_>, tool: &str, spec: &ToolSpec, other: &Flow) {
    let file = checker.file;
    for (slot, expression) in &spec.with {
        let at = pointer(&["tools", tool, "with", slot]);
        let Some(target) = other.slots.get(slot) else {
            unknown_slot(checker, tool, "`with`", slot, other, checker.key(&at));
            continue;
        };
        // Only a plain `args.NAME` or `slots.NAME` has a type to compare.
        let source = expression.trim();
        let from = if let Some(param) = source.strip_prefix("args.") {
            spec.params
                .get(param)
                .map(|p| (format!("parameter `{param}`"), schema_of(&p.schema)))
        } else if let Some(own) = source.strip_prefix("slots.") {
            file.slots
                .get(own)
                .map(|s| (format!("slot `{own}`"), schema_of(&s.schema)))
        } else {
            None
        };
        if let Some((from, from_schema)) = from {
            let to = format!("slot `{slot}` of `{}`", other.name);
            types_fit(
                checker,
                tool,
                "`with`",
                (from, &from_schema),
                (to, &target.schema),
                &at,
            );
        }
    }
    for (own, theirs) in &spec.returns {
        let at = pointer(&["tools", tool, "returns", own]);
        let Some(own_slot) = file.slots.get(own) else {
            checker.report(
                Diagnostic::new(
                    DiagnosticKind::HandoffUnknownSlot {
                        tool: tool.to_owned(),
                        key: "`returns`".to_owned(),
                        slot: own.clone(),
                        flow: file.flow.name.clone(),
                    },
                    checker.key(&at),
                )
                .with_label("not a slot of this flow")
                .with_help(declare_or(own, file.slots.keys().map(String::as_str))),
            );
            continue;
        };
        let Some(their_slot) = other.slots.get(theirs) else {
            unknown_slot(
                checker,
                tool,
                "`returns`",
                theirs,
                other,
                checker.value(&at),
            );
            continue;
        };
        let from = format!("slot `{theirs}` of `{}`", other.name);
        let to = format!("slot `{own}`");
        let own_schema = schema_of(&own_slot.schema);
        types_fit(
            checker,
            tool,
            "`returns`",
            (from, &their_slot.schema),
            (to, &own_schema),
            &at,
        );
    }
}

fn schema_of(keywords: &crate::keywords::SchemaKeywords) -> Value {
    serde_json::to_value(keywords).unwrap_or(Value::Null)
}

fn declare_or<'a>(name: &str, declared: impl Iterator<Item = &'a str>) -> String {
    let declared: Vec<&str> = declared.collect();
    match suggest::closest(name, declared.iter().copied()) {
        Some(close) => format!("did you mean `{close}`?"),
        None => format!(
            "declare `[slots.{name}]`, or use one of {}",
            suggest::list(&declared)
        ),
    }
}

fn unknown_slot(
    checker: &mut Checker<'_>,
    tool: &str,
    key: &str,
    slot: &str,
    other: &Flow,
    span: Option<std::ops::Range<usize>>,
) {
    checker.report(
        Diagnostic::new(
            DiagnosticKind::HandoffUnknownSlot {
                tool: tool.to_owned(),
                key: key.to_owned(),
                slot: slot.to_owned(),
                flow: other.name.clone(),
            },
            span,
        )
        .with_label(format!("not a slot of `{}`", other.name))
        .with_help(declare_or(slot, other.slots.keys().map(String::as_str))),
    );
}

/// Reports a value moved between slots (or from a parameter) whose types never overlap.
fn types_fit(
    checker: &mut Checker<'_>,
    tool: &str,
    key: &str,
    (from, from_schema): (String, &Value),
    (to, to_schema): (String, &Value),
    at: &str,
) {
    let (Some(from_types), Some(to_types)) =
        (declared_types(from_schema), declared_types(to_schema))
    else {
        return;
    };
    if !overlaps(&from_types, &to_types) {
        checker.report(
            Diagnostic::new(
                DiagnosticKind::HandoffSlotType {
                    tool: tool.to_owned(),
                    key: key.to_owned(),
                    from,
                    from_type: from_types.join(" | "),
                    to,
                    to_type: to_types.join(" | "),
                },
                checker.value(at),
            )
            .with_label("values could never be stored there")
            .with_help("give both the same `type`, or map another slot"),
        );
    }
}
