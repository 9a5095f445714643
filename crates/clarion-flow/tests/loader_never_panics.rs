//! The loader as a property: whatever the input, it returns a report — no panic, no hang —
//! and the report is usable: every span slices the file, every diagnostic renders, and the
//! flow is there exactly when there are no errors.
//!
//! Three generators, from blind to informed:
//!
//! 1. arbitrary bytes, and bytes drawn from TOML's punctuation (finds decoder and
//!    span-arithmetic bugs);
//! 2. TOML built from a grammar of the flow format's own keys and tables, with template
//!    strings full of `{{ }}` / `{% %}` fragments (reaches the structural, semantic and
//!    template checks, where spans are computed inside strings);
//! 3. mutations of `flows/personal-finance.toml`: lines deleted, duplicated or swapped,
//!    characters inserted (almost-valid flows, the realistic case).
//!
//! Each runs 256 cases by default so `cargo test` stays fast. For a long run (the loader
//! has had 200,000 per property in release builds):
//!
//! ```text
//! PROPTEST_CASES=20000 cargo test --release -p clarion-engine --test loader_never_panics
//! ```
//!
//! A failure prints the shrunk input; it then belongs in `tests/regression.rs` as a test
//! named after the bug. Failures are not persisted to files, so runs leave no litter.

use std::fmt::Write as _;

use clarion_flow::diagnostic::render;
use clarion_flow::export::{ExportFormat, export};
use clarion_flow::{LoadReport, load_bytes, load_str};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::Config;
use serde_json::Map;

const FINANCE: &str = include_str!("../../../flows/personal-finance.toml");

/// 256 cases unless `PROPTEST_CASES` says otherwise; failures are not written to disk.
fn config() -> Config {
    Config {
        failure_persistence: None,
        ..Config::default()
    }
}

/// The invariants every report keeps, whatever the input.
fn check(report: &LoadReport) -> Result<(), TestCaseError> {
    let text = report.source.text();
    for diagnostic in &report.diagnostics {
        if let Some(span) = &diagnostic.span {
            prop_assert!(
                text.get(span.clone()).is_some(),
                "{} span {:?} does not slice the {}-byte file: {}",
                diagnostic.code(),
                span,
                text.len(),
                diagnostic.message()
            );
        }
        for (span, _) in &diagnostic.related {
            prop_assert!(text.get(span.clone()).is_some(), "related span {span:?}");
        }
        prop_assert!(!render::human(diagnostic, &report.source, true).is_empty());
        let json = render::json(diagnostic, &report.source);
        prop_assert!(json.line.is_some() == diagnostic.span.is_some());
    }
    prop_assert_eq!(report.flow.is_some(), report.error_count() == 0);
    if let Some(flow) = &report.flow {
        // What `clarion export` does next with a flow that loaded.
        for format in [
            ExportFormat::ChatCompletions,
            ExportFormat::Responses,
            ExportFormat::Assistants,
        ] {
            let _ = export(flow, format, &Map::new(), &Map::new());
        }
    }
    Ok(())
}

// ---- 1. bytes -------------------------------------------------------------------------

/// Bytes that mean something to TOML, mixed with anything at all.
fn toml_ish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        4 => select(&b"[]{}=\"'.,#\n\r\t \\-_:+0123456789abcdefxyz"[..]),
        1 => any::<u8>(),
    ];
    proptest::collection::vec(token, 0..512)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check(&load_bytes("bytes.toml", &bytes, None))?;
    }

    #[test]
    fn toml_punctuation(bytes in toml_ish_bytes()) {
        check(&load_bytes("punct.toml", &bytes, None))?;
    }
}

// ---- 2. TOML from the flow format's grammar -------------------------------------------

/// Keys of the flow format, JSON Schema keywords, and a few near misses and oddities.
const KEYS: &[&str] = &[
    "flow",
    "assistant",
    "limits",
    "tools",
    "slots",
    "params",
    "after",
    "on_error",
    "http",
    "command",
    "name",
    "description",
    "version",
    "model",
    "instructions",
    "temperature",
    "tool_choice",
    "max_steps",
    "tool_timeout",
    "max_consecutive_failures",
    "requires_action_timeout",
    "builtin",
    "client",
    "strict",
    "when",
    "inject",
    "set",
    "ask",
    "slot",
    "required",
    "type",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "enum",
    "items",
    "properties",
    "pattern",
    "format",
    "default",
    "$ref",
    "url",
    "method",
    "headers",
    "env",
    "timeout",
    "result_pointer",
    "argv",
    "minimun",
    "tpye",
    "goal",
    "plan",
    "x",
    "a b",
    "é",
    "",
];

/// Names for tools, parameters and slots: valid ones, and ones the name checks reject.
const NAMES: &[&str] = &[
    "plan",
    "lookup",
    "goal",
    "monthly_income",
    "risk_tolerance",
    "x",
    "a-b",
    "1bad",
    "a b",
    "finance.plan",
    "é",
];

/// Pieces of template text: tags, names in and out of scope, quotes and escapes.
const FRAGMENTS: &[&str] = &[
    "{{ ",
    " }}",
    "{{",
    "}}",
    "{% if ",
    " %}",
    "{% endif %}",
    "{% else %}",
    "{% for x in args.items %}",
    "{% endfor %}",
    "{% set y = 1 %}",
    "{#",
    "#}",
    "{{-",
    "-}}",
    "slots.",
    "args.",
    "result.",
    "error.",
    "env.",
    "metadata.",
    "goal",
    "monthly_income",
    "risk_tolerance",
    "attainable",
    "message",
    "HOME",
    " and ",
    "not ",
    " == ",
    "(",
    ")",
    "|upper",
    "|tojson",
    "[0]",
    "'",
    "\"",
    "\\",
    "\\n",
    "\n",
    "\r\n",
    "\t",
    "€",
    "🙂",
    "0",
    "1.5",
    "-",
    "x",
    " ",
    "text ",
    "/",
    "~",
    "\u{0}",
    "\u{7f}",
    "30s",
    "GET",
    "https://h/",
    "finance.savings_timeline",
    "{{ slots.goal }}",
    "{{ slots.risk_tolerence }}",
    "{{ args.goal }}",
    "{{ args.x | upper }}",
    "{{ result.years }}",
    "{{ error.message }}",
    "{{ error.code }}",
    "{{ env.HOME }}",
    "{{ metadata.channel }}",
    "{% if slots.goal %}",
    "result.attainable",
    "not result.attainable",
    "args.goal > 0",
    "slots.goal",
];

fn template() -> impl Strategy<Value = String> {
    proptest::collection::vec(select(FRAGMENTS), 0..10).prop_map(|parts| parts.concat())
}

/// A key as TOML writes it: bare when it can be, quoted otherwise.
fn key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare { name.to_owned() } else { basic(name) }
}

fn basic(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push('\t'),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A string in one of TOML's four forms (when the text allows it), or now and then raw —
/// unescaped, often invalid, which exercises the syntax errors inside strings.
fn string_value() -> impl Strategy<Value = String> {
    (template(), 0..12u8).prop_map(|(text, form)| {
        let plain = !text.chars().any(|c| c.is_control() && c != '\t');
        match form {
            1 if plain && !text.contains('\'') => format!("'{text}'"),
            2 if !text.contains("'''") && !text.contains('\r') && !text.contains('\u{0}') => {
                format!("'''\n{text}'''")
            }
            3 => {
                let escaped = basic(&text);
                format!("\"\"\"\n{}\"\"\"", &escaped[1..escaped.len() - 1])
            }
            4 => format!("\"{text}\""),
            _ => basic(&text),
        }
    })
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => string_value(),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => select(&["0", "1", "-1", "8", "1000", "1001", "0x7f", "0o17", "0b101",
                      "99999999999999999999", "1_000"][..]).prop_map(str::to_owned),
        1 => select(&["0.5", "2.5", "-0.0", "1e400", "nan", "inf", "-inf", "1e-9"][..])
            .prop_map(str::to_owned),
        1 => any::<bool>().prop_map(|b| b.to_string()),
        1 => select(&["1979-05-27T07:32:00Z", "1979-05-27", "07:32:00"][..])
            .prop_map(str::to_owned),
    ]
}

fn value() -> impl Strategy<Value = String> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|items| format!("[{}]", items.join(", "))),
            proptest::collection::vec((select(KEYS), inner), 0..4).prop_map(|entries| {
                let mut seen = Vec::new();
                let entries: Vec<String> = entries
                    .into_iter()
                    .filter(|(k, _)| {
                        let fresh = !seen.contains(k);
                        seen.push(*k);
                        fresh
                    })
                    .map(|(k, v)| format!("{} = {v}", key(k)))
                    .collect();
                format!("{{ {} }}", entries.join(", "))
            }),
        ]
    })
}

/// A table header (`true` for an array of tables): mostly the format's real tables,
/// sometimes any path of keys.
fn header() -> impl Strategy<Value = Header> {
    let name = || select(NAMES).prop_map(str::to_owned);
    let after = name().prop_map(|t| (true, vec!["tools".to_owned(), t, "after".to_owned()]));
    let table = prop_oneof![
        1 => Just(vec!["flow".to_owned()]),
        1 => Just(vec!["assistant".to_owned()]),
        1 => Just(vec!["limits".to_owned()]),
        2 => name().prop_map(|s| vec!["slots".to_owned(), s]),
        3 => name().prop_map(|t| vec!["tools".to_owned(), t]),
        4 => (name(), name()).prop_map(|(t, p)| vec!["tools".to_owned(), t, "params".to_owned(), p]),
        2 => (name(), select(&["http", "command", "on_error", "http.headers"][..]))
            .prop_map(|(t, sub)| {
                let mut path = vec!["tools".to_owned(), t];
                path.extend(sub.split('.').map(str::to_owned));
                path
            }),
        1 => (name(), name(), name()).prop_map(|(t, p, q)| {
            vec!["tools".to_owned(), t, "params".to_owned(), p, "properties".to_owned(), q]
        }),
        1 => proptest::collection::vec(select(KEYS).prop_map(str::to_owned), 1..4),
    ];
    prop_oneof![4 => table.prop_map(|path| (false, path)), 1 => after]
}

/// A table header (`true` for `[[…]]`) and its path of keys.
type Header = (bool, Vec<String>);
/// A dotted key and its value, as TOML text.
type Entry = (Vec<String>, String);

fn section() -> impl Strategy<Value = (Option<Header>, Vec<Entry>)> {
    let entry = (
        proptest::collection::vec(select(KEYS).prop_map(str::to_owned), 1..3),
        value(),
    );
    (
        proptest::option::weighted(0.9, header()),
        proptest::collection::vec(entry, 0..6),
    )
}

/// A whole document: usually a valid `[flow]` and `[assistant]` first (so the checks past
/// the structural pass run), then random tables. Repeated tables and keys are dropped so
/// most documents are valid TOML and reach the flow checks.
fn document() -> impl Strategy<Value = String> {
    (
        prop::bool::weighted(0.8),
        template(),
        proptest::collection::vec(section(), 0..10),
    )
        .prop_map(|(prelude, instructions, sections)| {
            let mut text = String::new();
            if prelude {
                let _ = writeln!(
                    text,
                    "[flow]\nname = \"generated\"\n[assistant]\nmodel = \"m\"\ninstructions = {}",
                    basic(&instructions)
                );
            }
            let mut headers: Vec<(bool, String)> = if prelude {
                vec![(false, "flow".to_owned()), (false, "assistant".to_owned())]
            } else {
                Vec::new()
            };
            for (header, entries) in sections {
                if let Some((array, path)) = header {
                    let dotted: Vec<String> = path.iter().map(|k| key(k)).collect();
                    let dotted = dotted.join(".");
                    let clash = headers.iter().any(|(a, h)| *h == dotted && !(*a && array));
                    if clash {
                        continue;
                    }
                    if array {
                        let _ = writeln!(text, "[[{dotted}]]");
                    } else {
                        let _ = writeln!(text, "[{dotted}]");
                    }
                    headers.push((array, dotted));
                }
                let mut keys: Vec<String> = Vec::new();
                for (path, value) in entries {
                    let dotted: Vec<String> = path.iter().map(|k| key(k)).collect();
                    let dotted = dotted.join(".");
                    if keys
                        .iter()
                        .any(|k| dotted.starts_with(k.as_str()) || k.starts_with(&dotted))
                    {
                        continue;
                    }
                    let _ = writeln!(text, "{dotted} = {value}");
                    keys.push(dotted);
                }
            }
            text
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn flow_shaped_toml(text in document()) {
        let report = load_str("generated.toml", &text, None);
        check(&report)?;
        let again = load_bytes("generated.toml", text.as_bytes(), None);
        prop_assert_eq!(&again.diagnostics, &report.diagnostics);
    }
}

// ---- 3. mutations of a real flow ------------------------------------------------------

#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    InsertChar(Index, char),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = select(
        &[
            '[', ']', '{', '}', '"', '\'', '=', '.', ',', '#', '\n', '\r', '\\', ' ', '%', '|',
            '\u{0}', '\u{FEFF}', '€', 'x', '0',
        ][..],
    );
    prop_oneof![
        any::<Index>().prop_map(Mutation::DeleteLine),
        any::<Index>().prop_map(Mutation::DuplicateLine),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (
            any::<Index>(),
            prop_oneof![3 => interesting, 1 => any::<char>()]
        )
            .prop_map(|(at, c)| Mutation::InsertChar(at, c)),
    ]
}

fn mutate(text: &str, mutation: &Mutation) -> String {
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    match mutation {
        Mutation::DeleteLine(i) => {
            lines.remove(i.index(lines.len()));
            lines.concat()
        }
        Mutation::DuplicateLine(i) => {
            let i = i.index(lines.len());
            lines.insert(i, lines[i]);
            lines.concat()
        }
        Mutation::SwapLines(a, b) => {
            let (a, b) = (a.index(lines.len()), b.index(lines.len()));
            lines.swap(a, b);
            lines.concat()
        }
        Mutation::InsertChar(at, c) => {
            let offsets: Vec<usize> = text
                .char_indices()
                .map(|(i, _)| i)
                .chain([text.len()])
                .collect();
            let mut out = text.to_owned();
            out.insert(offsets[at.index(offsets.len())], *c);
            out
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_personal_finance(mutations in proptest::collection::vec(mutation(), 1..4)) {
        let text = mutations.iter().fold(FINANCE.to_owned(), |text, m| mutate(&text, m));
        let report = load_str("personal-finance.toml", &text, None);
        check(&report)?;
        if report.error_count() == 0 {
            prop_assert!(report.flow.is_some());
        }
    }
}
