//! The template language: MiniJinja, configured once for the whole engine.
//!
//! Flows use templates in instructions, questions, injected context and HTTP requests, and
//! expressions in `when` and `set`. Every one of them is compiled at load time and every
//! name it reads is checked against its [`Scope`], so a typo such as `slots.risk_tolerence`
//! is a diagnostic, never an empty string in front of a user. Because names are checked
//! statically, rendering can be forgiving about *values*: an unset slot, metadata key or
//! optional argument is false in a condition, compares unequal to everything and prints as
//! nothing (MiniJinja's chainable undefined). A prompt must never fail a run because an
//! optional fact is not known yet.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, OnceLock, PoisonError};

use minijinja::{Environment, UndefinedBehavior};

/// The shared environment (no loader: templates cannot include files).
#[must_use]
pub fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        // Block tags (`{% if %}`) on their own line leave no blank line behind: prompts
        // are written with one condition per line.
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        env
    })
}

/// Where a template or expression appears, which decides the names it may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `assistant.instructions`: `slots`, `metadata`.
    Instructions,
    /// A parameter's `ask`: `args` (those known so far), `slots`.
    Ask,
    /// `after` rules (`when`, `inject`, `set`): `args`, `result`, `slots`.
    After,
    /// `on_error.inject`: `args`, `error`, `slots`.
    OnError,
    /// A parameter's `invalid`: `args` (the valid ones), `error` (why the value was
    /// rejected), `slots`.
    Invalid,
    /// HTTP tool URL and headers: `args`, `env`.
    Http,
}

impl Scope {
    /// The top-level names in scope.
    #[must_use]
    pub fn roots(self) -> &'static [&'static str] {
        match self {
            Self::Instructions => &["slots", "metadata"],
            Self::Ask => &["args", "slots"],
            Self::After => &["args", "result", "slots"],
            Self::OnError | Self::Invalid => &["args", "error", "slots"],
            Self::Http => &["args", "env"],
        }
    }

    /// The fields of `error` where it is in scope.
    #[must_use]
    pub fn error_fields(self) -> &'static [&'static str] {
        match self {
            Self::OnError => ERROR_FIELDS,
            Self::Invalid => REJECTION_FIELDS,
            _ => &[],
        }
    }
}

/// Fields of `error` in `on_error` templates.
pub const ERROR_FIELDS: &[&str] = &["kind", "message"];

/// Fields of `error` in `invalid` templates: the JSON Schema keyword the value failed
/// (`maximum`, `enum`, `type`…), the keyword's limit where it has one (`50` for
/// `maximum = 50`, the list for `enum`), and the rejected value.
pub const REJECTION_FIELDS: &[&str] = &["keyword", "limit", "value"];

/// Global functions MiniJinja provides; reading them is not an undefined name.
const GLOBALS: &[&str] = &[
    "range",
    "dict",
    "namespace",
    "debug",
    "lipsum",
    "cycler",
    "joiner",
];

/// Compiles a template and returns the names it reads from its context, as dotted paths
/// (`slots.goal`, `args`).
pub fn template_names(source: &str) -> Result<HashSet<String>, minijinja::Error> {
    let template = environment().template_from_str(source)?;
    Ok(without_globals(template.undeclared_variables(true)))
}

/// Compiles an expression and returns the names it reads.
pub fn expression_names(source: &str) -> Result<HashSet<String>, minijinja::Error> {
    let expression = environment().compile_expression(source)?;
    Ok(without_globals(expression.undeclared_variables(true)))
}

fn without_globals(mut names: HashSet<String>) -> HashSet<String> {
    names.retain(|name| !GLOBALS.contains(&name.split('.').next().unwrap_or_default()));
    names
}

/// Any serializable value as a template value.
#[must_use]
pub fn to_value<T: serde::Serialize>(value: &T) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(value))
}

/// Renders `assistant.instructions` with the thread's slots and metadata, without leading
/// or trailing whitespace.
pub fn render_instructions(
    source: &str,
    slots: &serde_json::Map<String, serde_json::Value>,
    metadata: &serde_json::Map<String, serde_json::Value>,
) -> Result<String, minijinja::Error> {
    Precompiled::default().render_instructions(source, slots, metadata)
}

/// Templates and expressions compiled once and found again by their source text: the
/// instructions every model request renders and the `after` and `on_error` rules a run
/// applies on every tool result (compiling them each time was ~3% of a `clarion chat`
/// round trip, each). A source that was not given, or did not compile, is compiled where
/// it is used, to fail there as it always did.
#[derive(Debug, Default)]
pub struct Precompiled {
    /// The shared environment's settings, holding the templates.
    env: Option<Environment<'static>>,
    /// Each template's name in `env`, by source. Names are `<string N>`: a name ending in
    /// `.html` or `.json` would turn on MiniJinja's auto-escaping, which `render_str`
    /// (named `<string>`) never has.
    names: HashMap<String, String>,
    expressions: HashMap<String, minijinja::Expression<'static, 'static>>,
    /// The instructions rendered last, newest first, with what they were rendered from:
    /// every model request renders them, and many render them from what a recent request
    /// did (each new conversation's first, with no slots yet; the steps of a turn that set
    /// no slot). Rendering is a pure function of the source, slots and metadata (no clock,
    /// no randomness).
    last_instructions: Mutex<VecDeque<Rendered>>,
}

/// How many renderings of the instructions [`Precompiled`] keeps.
const KEPT_INSTRUCTIONS: usize = 4;

/// Instructions as [`Precompiled::render_instructions`] rendered them.
#[derive(Debug)]
struct Rendered {
    source: String,
    slots: serde_json::Map<String, serde_json::Value>,
    metadata: serde_json::Map<String, serde_json::Value>,
    text: String,
}

impl Precompiled {
    /// Compiles `templates` and `expressions`; those that do not compile are left out.
    pub fn new<'a>(
        templates: impl IntoIterator<Item = &'a str>,
        expressions: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut env = environment().clone();
        let mut names = HashMap::new();
        for source in templates {
            let name = format!("<string {}>", names.len());
            if !names.contains_key(source)
                && env
                    .add_template_owned(name.clone(), source.to_owned())
                    .is_ok()
            {
                names.insert(source.to_owned(), name);
            }
        }
        let expressions = expressions
            .into_iter()
            .filter_map(|source| {
                let compiled = environment().compile_expression_owned(source.to_owned());
                Some((source.to_owned(), compiled.ok()?))
            })
            .collect();
        Self {
            env: (!names.is_empty()).then_some(env),
            names,
            expressions,
            last_instructions: Mutex::new(VecDeque::new()),
        }
    }

    /// `source` rendered with `context`: what `environment().render_str` gives.
    pub fn render(
        &self,
        source: &str,
        context: minijinja::Value,
    ) -> Result<String, minijinja::Error> {
        let compiled = self.env.as_ref().zip(self.names.get(source));
        match compiled.and_then(|(env, name)| env.get_template(name).ok()) {
            Some(template) => template.render(context),
            None => environment().render_str(source, context),
        }
    }

    /// [`render_instructions`] of `source`, from this cache when it holds it.
    pub fn render_instructions(
        &self,
        source: &str,
        slots: &serde_json::Map<String, serde_json::Value>,
        metadata: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, minijinja::Error> {
        let kept = || {
            self.last_instructions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        {
            let mut kept = kept();
            if let Some(at) = kept
                .iter()
                .position(|r| r.source == source && r.slots == *slots && r.metadata == *metadata)
            {
                let text = kept[at].text.clone();
                if let Some(hit) = kept.remove(at) {
                    kept.push_front(hit);
                }
                return Ok(text);
            }
        }
        // Rendered without the lock: concurrent runs of the flow do not queue on it.
        let context = minijinja::context! {
            slots => to_value(slots),
            metadata => to_value(metadata),
        };
        let text = self.render(source, context)?.trim().to_owned();
        let mut kept = kept();
        kept.truncate(KEPT_INSTRUCTIONS - 1);
        kept.push_front(Rendered {
            source: source.to_owned(),
            slots: slots.clone(),
            metadata: metadata.clone(),
            text: text.clone(),
        });
        Ok(text)
    }

    /// Expression `source` evaluated with `context`: what compiling it with
    /// `environment()` and evaluating gives.
    pub fn eval(
        &self,
        source: &str,
        context: minijinja::Value,
    ) -> Result<minijinja::Value, minijinja::Error> {
        match self.expressions.get(source) {
            Some(expression) => expression.eval(context),
            None => environment().compile_expression(source)?.eval(context),
        }
    }
}

/// A render error in one line: MiniJinja's detail, and the line it happened on.
#[must_use]
pub fn describe(error: &minijinja::Error) -> String {
    let detail = error
        .detail()
        .map_or_else(|| error.kind().to_string(), ToOwned::to_owned);
    match error.line() {
        Some(line) => format!("{detail} (line {line} of the template)"),
        None => detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_reported_with_their_attribute() {
        let names = template_names("{{ slots.goal }} {% for x in range(3) %}{{ x }}{% endfor %}")
            .unwrap_or_default();
        assert_eq!(names, HashSet::from(["slots.goal".to_owned()]));
        let names = expression_names("not result.attainable and args.a > 0").unwrap_or_default();
        assert!(names.contains("result.attainable") && names.contains("args.a"));
    }

    #[test]
    fn syntax_errors_are_errors() {
        assert!(template_names("{{ oops").is_err());
        assert!(expression_names("a +").is_err());
    }

    #[test]
    fn block_tags_leave_no_blank_lines() {
        let slots = serde_json::Map::from_iter([("a".to_owned(), serde_json::json!("x"))]);
        let source = "Line one.\n{% if slots.a %}\nA is {{ slots.a }}.\n{% endif %}\n{% if slots.b %}\nB.\n{% endif %}\nEnd.\n";
        let rendered = render_instructions(source, &slots, &serde_json::Map::new());
        assert_eq!(rendered.ok().as_deref(), Some("Line one.\nA is x.\nEnd."));
    }

    #[test]
    fn precompiled_instructions_render_as_render_str_does() {
        let slots = serde_json::Map::from_iter([("a".to_owned(), serde_json::json!("x"))]);
        let metadata = serde_json::Map::from_iter([("m".to_owned(), serde_json::json!("y"))]);
        for source in [
            "Line one.\n{% if slots.a %}\nA is {{ slots.a }}.\n{% endif %}\n{{ metadata.m }}\n",
            "  plain  \n",
            "{{ slots.a | nope }}",
            "{{ slots.a + 1 }}",
        ] {
            let compiled = Precompiled::new([source], []);
            assert!(compiled.names.contains_key(source), "{source}");
            let once = render_instructions(source, &slots, &metadata).map_err(|e| describe(&e));
            for _ in 0..2 {
                let again = compiled
                    .render_instructions(source, &slots, &metadata)
                    .map_err(|e| describe(&e));
                assert_eq!(again, once, "{source}");
            }
        }
        assert!(Precompiled::new(["{{ oops"], []).names.is_empty());
    }

    #[test]
    fn instructions_rendered_again_follow_every_change_of_source_slots_and_metadata() {
        let map = |pairs: &[(&str, serde_json::Value)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect::<serde_json::Map<_, _>>()
        };
        let first = "A={{ slots.a }} M={{ metadata.m }}";
        let second = "a is {{ slots.a }}";
        let compiled = Precompiled::new([first, second], []);
        let none = map(&[]);
        let a1 = map(&[("a", serde_json::json!(1))]);
        let a2 = map(&[("a", serde_json::json!(2))]);
        let m = map(&[("m", serde_json::json!("x"))]);
        // Each case after the one before it: the same inputs again, then one changed.
        for (source, slots, metadata, expected) in [
            (first, &none, &none, "A= M="),
            (first, &none, &none, "A= M="),
            (first, &a1, &none, "A=1 M="),
            (first, &a1, &none, "A=1 M="),
            (first, &a2, &none, "A=2 M="),
            (first, &a2, &m, "A=2 M=x"),
            (second, &a2, &m, "a is 2"),
            (first, &a2, &m, "A=2 M=x"),
            (first, &none, &none, "A= M="),
        ] {
            let rendered = compiled.render_instructions(source, slots, metadata);
            assert_eq!(rendered.ok().as_deref(), Some(expected));
        }
        // More renderings than are kept: each still renders as itself.
        for round in 0..2 {
            for n in 0..(KEPT_INSTRUCTIONS + 2) {
                let slots = map(&[("a", serde_json::json!(n))]);
                let rendered = compiled.render_instructions(first, &slots, &none);
                assert_eq!(rendered.ok(), Some(format!("A={n} M=")), "round {round}");
            }
        }
        // A failed render is not kept: it fails again, and the next good one renders.
        let failing = "{{ slots.a + 1 }}";
        let strings = map(&[("a", serde_json::json!("text"))]);
        for _ in 0..2 {
            assert!(
                compiled
                    .render_instructions(failing, &strings, &none)
                    .is_err()
            );
        }
        let rendered = compiled.render_instructions(first, &a1, &none);
        assert_eq!(rendered.ok().as_deref(), Some("A=1 M="));
    }

    #[test]
    fn precompiled_sources_give_what_compiling_them_in_place_gives() {
        let context = || {
            minijinja::context! {
                result => minijinja::context! { years => 2, attainable => true },
                slots => minijinja::context! {},
            }
        };
        let templates = [
            "A {{ result.years }}-year plan.",
            "{{ result.years | nope }}",
            "{{ oops",
            // Named by its source, this template would be escaped as JSON.
            "Plan: {{ result.years }} years <b>&</b> {{ 'more' }}, see plan.json",
        ];
        let expressions = [
            "result.attainable",
            "not result.attainable",
            "result.years +",
            "slots.x",
        ];
        let precompiled = Precompiled::new(templates, expressions);
        let never_given = Precompiled::default();
        for source in templates.into_iter().chain(["{{ result.years * 12 }}"]) {
            let once = environment()
                .render_str(source, context())
                .map_err(|e| describe(&e));
            for cache in [&precompiled, &never_given] {
                assert_eq!(
                    cache.render(source, context()).map_err(|e| describe(&e)),
                    once,
                    "{source}"
                );
            }
        }
        for source in expressions.into_iter().chain(["result.years * 12"]) {
            let once = environment()
                .compile_expression(source)
                .and_then(|e| e.eval(context()))
                .map(|v| v.to_string())
                .map_err(|e| describe(&e));
            for cache in [&precompiled, &never_given] {
                let again = cache
                    .eval(source, context())
                    .map(|v| v.to_string())
                    .map_err(|e| describe(&e));
                assert_eq!(again, once, "{source}");
            }
        }
    }

    #[test]
    fn unset_values_are_false_unequal_and_print_as_nothing() {
        let env = environment();
        let ctx = minijinja::context! { slots => minijinja::context! {}, metadata => minijinja::context! {} };
        for (source, expected) in [
            ("{% if slots.x %}yes{% else %}no{% endif %}", "no"),
            (
                "{% if metadata.channel == 'chat' %}chat{% else %}other{% endif %}",
                "other",
            ),
            ("{% if slots.trip.date %}dated{% endif %}", ""),
            ("[{{ slots.x }}]", "[]"),
        ] {
            assert_eq!(
                env.render_str(source, &ctx).ok().as_deref(),
                Some(expected),
                "{source}"
            );
        }
    }
}
