//! Every template and expression compiles and reads only names in its scope.
//!
//! A template's syntax error points at the offending text inside the TOML string. A name
//! out of scope gets a caret under its first use and a list of what *is* in scope, because
//! the usual cause is a typo (`slots.risk_tolerence`) or a rule reading `result` where no
//! result exists (`on_error`).

use std::collections::BTreeSet;

use super::Checker;
use crate::diagnostic::{Diagnostic, DiagnosticKind};
use crate::spans::pointer;
use crate::spec::OnExhausted;
use crate::spec::{ParamSpec, ToolSpec};
use crate::structure::table_name;
use crate::suggest;
use crate::template::{Scope, expression_names, template_names};

/// Whether a string is a template (rendered into text) or an expression (evaluated).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Template,
    Expression,
}

struct Site<'t> {
    at: String,
    text: &'t str,
    what: &'static str,
    form: Form,
    scope: Scope,
    tool: Option<(&'t str, &'t ToolSpec)>,
}

/// The question that asks the user to confirm a call (`confirm`).
fn confirm_site<'t>(name: &'t str, tool: &'t ToolSpec, sites: &mut Vec<Site<'t>>) {
    if let Some(confirm) = &tool.confirm {
        sites.push(Site {
            at: pointer(&["tools", name, "confirm"]),
            text: confirm,
            what: "`confirm`",
            form: Form::Template,
            scope: Scope::Ask,
            tool: Some((name, tool)),
        });
    }
}

pub(super) fn check(checker: &mut Checker<'_>) {
    let file = checker.file;
    let mut sites = vec![Site {
        at: "/assistant/instructions".to_owned(),
        text: &file.assistant.instructions,
        what: "`instructions`",
        form: Form::Template,
        scope: Scope::Instructions,
        tool: None,
    }];
    for (name, tool) in &file.tools {
        let context = Some((name.as_str(), tool));
        confirm_site(name, tool, &mut sites);
        for (slot, expression) in &tool.with {
            sites.push(Site {
                at: pointer(&["tools", name, "with", slot]),
                text: expression,
                what: "this `with` value",
                form: Form::Expression,
                scope: Scope::Ask,
                tool: context,
            });
        }
        for (param, spec) in &tool.params {
            param_sites(&mut sites, name, param, spec, context);
        }
        for (i, rule) in tool.after.iter().enumerate() {
            let index = i.to_string();
            if let Some(when) = &rule.when {
                sites.push(Site {
                    at: pointer(&["tools", name, "after", &index, "when"]),
                    text: when,
                    what: "`when`",
                    form: Form::Expression,
                    scope: Scope::After,
                    tool: context,
                });
            }
            if let Some(inject) = &rule.inject {
                sites.push(Site {
                    at: pointer(&["tools", name, "after", &index, "inject"]),
                    text: inject,
                    what: "`inject`",
                    form: Form::Template,
                    scope: Scope::After,
                    tool: context,
                });
            }
            for (slot, expression) in &rule.set {
                let at = pointer(&["tools", name, "after", &index, "set", slot]);
                if !file.slots.contains_key(slot) {
                    undeclared_slot(checker, slot, checker.key(&at));
                }
                sites.push(Site {
                    at,
                    text: expression,
                    what: "this `set` value",
                    form: Form::Expression,
                    scope: Scope::After,
                    tool: context,
                });
            }
        }
        if let Some(on_error) = &tool.on_error {
            sites.push(Site {
                at: pointer(&["tools", name, "on_error", "inject"]),
                text: &on_error.inject,
                what: "`on_error.inject`",
                form: Form::Template,
                scope: Scope::OnError,
                tool: context,
            });
        }
        if let Some(http) = &tool.http {
            sites.push(Site {
                at: pointer(&["tools", name, "http", "url"]),
                text: &http.url,
                what: "`url`",
                form: Form::Template,
                scope: Scope::Http,
                tool: context,
            });
            for (header, value) in &http.headers {
                sites.push(Site {
                    at: pointer(&["tools", name, "http", "headers", header]),
                    text: value,
                    what: "this header",
                    form: Form::Template,
                    scope: Scope::Http,
                    tool: context,
                });
            }
        }
    }
    for site in sites {
        if !checker.broken.covers(&site.at) {
            check_site(checker, &site);
        }
    }
}

/// The templates of one parameter: `ask`, `invalid` and `on_exhausted`.
fn param_sites<'t>(
    sites: &mut Vec<Site<'t>>,
    tool: &str,
    param: &str,
    spec: &'t ParamSpec,
    context: Option<(&'t str, &'t ToolSpec)>,
) {
    if let Some(ask) = &spec.ask {
        sites.push(Site {
            at: pointer(&["tools", tool, "params", param, "ask"]),
            text: ask,
            what: "`ask`",
            form: Form::Template,
            scope: Scope::Ask,
            tool: context,
        });
    }
    if let Some(invalid) = &spec.invalid {
        sites.push(Site {
            at: pointer(&["tools", tool, "params", param, "invalid"]),
            text: invalid,
            what: "`invalid`",
            form: Form::Template,
            scope: Scope::Invalid,
            tool: context,
        });
    }
    if let Some(outcome) = &spec.on_exhausted {
        let (key, text) = match outcome {
            OnExhausted::Inject(text) => ("inject", text),
            OnExhausted::End(text) => ("end", text),
            // A tool's name, checked with the handoffs.
            OnExhausted::HandOff(_) => return,
        };
        sites.push(Site {
            at: pointer(&["tools", tool, "params", param, "on_exhausted", key]),
            text,
            what: "`on_exhausted`",
            form: Form::Template,
            scope: Scope::Ask,
            tool: context,
        });
    }
}

fn check_site(checker: &mut Checker<'_>, site: &Site<'_>) {
    let compiled = match site.form {
        Form::Template => template_names(site.text),
        Form::Expression => expression_names(site.text),
    };
    let names = match compiled {
        Ok(names) => names,
        Err(error) => {
            let message = error
                .detail()
                .map_or_else(|| error.kind().to_string(), ToOwned::to_owned);
            let span = error
                .range()
                .and_then(|range| checker.inside_string(&site.at, range))
                .or_else(|| checker.value(&site.at));
            let kind = match site.form {
                Form::Template => DiagnosticKind::TemplateSyntax {
                    what: site.what.to_owned(),
                    message,
                },
                Form::Expression => DiagnosticKind::ExpressionSyntax {
                    what: site.what.to_owned(),
                    message,
                },
            };
            let bare = site
                .text
                .trim()
                .strip_prefix("{{")
                .and_then(|t| t.strip_suffix("}}"))
                .map(str::trim);
            let help = match (site.form, bare) {
                (Form::Template, _) => {
                    "templates use MiniJinja (Jinja2) syntax: `{{ slots.name }}`, \
                     `{% if … %}…{% endif %}`"
                        .to_owned()
                }
                (Form::Expression, Some(bare)) => {
                    format!("write the expression without `{{{{ }}}}`: `{bare}`")
                }
                (Form::Expression, None) => {
                    "an expression is what goes inside `{{ … }}`, e.g. `not result.attainable`"
                        .to_owned()
                }
            };
            checker.report(Diagnostic::new(kind, span).with_help(help));
            return;
        }
    };
    // Sorted so diagnostics come out in a stable order.
    for name in names.into_iter().collect::<BTreeSet<_>>() {
        check_name(checker, site, &name);
    }
}

fn check_name(checker: &mut Checker<'_>, site: &Site<'_>, name: &str) {
    let mut parts = name.splitn(3, '.');
    let root = parts.next().unwrap_or_default();
    let field = parts.next();
    let roots = site.scope.roots();
    let span = checker.find_in_string(&site.at, site.text, name);
    if !roots.contains(&root) {
        let help = match suggest::closest(root, roots.iter().copied()) {
            Some(near) => format!(
                "did you mean `{near}`? {} can read {}",
                site.what,
                suggest::list(roots)
            ),
            None => format!("{} can read {}", site.what, suggest::list(roots)),
        };
        checker.report(
            Diagnostic::new(
                DiagnosticKind::UndefinedName {
                    name: name.to_owned(),
                },
                span,
            )
            .with_label("not in scope")
            .with_help(help),
        );
        return;
    }
    let Some(field) = field else { return };
    match root {
        "slots" if !checker.file.slots.contains_key(field) => {
            let span = checker.find_in_string(&site.at, site.text, &format!("slots.{field}"));
            undeclared_slot(checker, field, span);
        }
        "args" => {
            if let Some((tool, spec)) = site.tool
                && !spec.params.contains_key(field)
            {
                undefined_arg(checker, site, tool, spec, field);
            }
        }
        "error" if !site.scope.error_fields().contains(&field) => {
            let fields = site.scope.error_fields();
            let label = if site.scope == Scope::Invalid {
                "rejected values have no such field"
            } else {
                "tool errors have no such field"
            };
            let span = checker.find_in_string(&site.at, site.text, &format!("error.{field}"));
            checker.report(
                Diagnostic::new(
                    DiagnosticKind::UndefinedName {
                        name: format!("error.{field}"),
                    },
                    span,
                )
                .with_label(label)
                .with_help(format!("`error` has {}", suggest::list(fields))),
            );
        }
        "env" => {
            let Some((tool, spec)) = site.tool else {
                return;
            };
            // A broken allow-list was dropped; what it would allow is unknown.
            let env_broken = checker
                .broken
                .covers(&pointer(&["tools", tool, "http", "env"]));
            let allowed = spec
                .http
                .as_ref()
                .map(|h| h.env.as_slice())
                .unwrap_or_default();
            if !env_broken && !allowed.iter().any(|v| v == field) {
                let span = checker.find_in_string(&site.at, site.text, &format!("env.{field}"));
                checker.report(
                    Diagnostic::new(
                        DiagnosticKind::EnvNotAllowed {
                            var: field.to_owned(),
                            tool: tool.to_owned(),
                        },
                        span,
                    )
                    .with_label("not allow-listed")
                    .with_help(format!(
                        "add it to the tool's allow-list: `env = [\"{field}\"]` in {}",
                        table_name(&pointer(&["tools", tool, "http"]))
                    )),
                );
            }
        }
        _ => {}
    }
}

fn undefined_arg(
    checker: &mut Checker<'_>,
    site: &Site<'_>,
    tool: &str,
    spec: &ToolSpec,
    field: &str,
) {
    // A broken `params` table was dropped whole; its names are unknown, not missing.
    if checker.broken.covers(&pointer(&["tools", tool, "params"])) {
        return;
    }
    let params: Vec<&str> = spec.params.keys().map(String::as_str).collect();
    let help = match suggest::closest(field, params.iter().copied()) {
        Some(near) => format!("did you mean `args.{near}`?"),
        None if params.is_empty() => format!("tool `{tool}` has no parameters"),
        None => format!("tool `{tool}` has parameters {}", suggest::list(&params)),
    };
    let span = checker.find_in_string(&site.at, site.text, &format!("args.{field}"));
    checker.report(
        Diagnostic::new(
            DiagnosticKind::UndefinedName {
                name: format!("args.{field}"),
            },
            span,
        )
        .with_label(format!("`{tool}` has no parameter `{field}`"))
        .with_help(help),
    );
}

fn undeclared_slot(checker: &mut Checker<'_>, slot: &str, span: Option<std::ops::Range<usize>>) {
    // A broken `[slots]` was dropped whole; its names are unknown, not undeclared.
    if checker.broken.covers("/slots") {
        return;
    }
    let declared: Vec<&str> = checker.file.slots.keys().map(String::as_str).collect();
    let help = match suggest::closest(slot, declared.iter().copied()) {
        Some(near) => format!("did you mean `{near}`?"),
        None if declared.is_empty() => {
            format!("declare it: `[slots.{slot}]` with a `type` and a `description`")
        }
        None => format!("declared slots are {}", suggest::list(&declared)),
    };
    checker.report(
        Diagnostic::new(
            DiagnosticKind::UndeclaredSlot {
                slot: slot.to_owned(),
            },
            span,
        )
        .with_label("no such slot")
        .with_help(help),
    );
}
