//! Scenario coverage: which parts of a flow its scenarios exercised.
//!
//! A flow's *elements* are the things a conversation can exercise: each tool (called by
//! the model), each parameter's `ask` (asked), each slot (set, and read), each `after` rule
//! (its `when` seen true and seen false, or, without `when`, applied) and each `on_error`
//! (ran). [`elements`] lists them from the validated flow; [`Collector`] counts hits from
//! the engine's events while a scenario plays — the same events transcripts come from,
//! plus two that exist for this ([`Event::FilledFromSlots`], [`Event::RuleEvaluated`]);
//! [`Coverage`] adds up every scenario's hits per flow and, given the flow file's spans,
//! puts each element on its line for the terminal summary, JSON and LCOV ([`render`]).
//!
//! Counting happens here, not in the CLI, so a Rust test can ask for the same numbers
//! (`Runner::with_coverage`). It is opt-in: without it, no collector runs.

pub mod render;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clarion_engine::{Event, RuleRef};
use clarion_flow::Flow;
use clarion_flow::source::SourceFile;
use clarion_flow::spans::{self, SpanIndex, pointer};
use clarion_flow::template::{expression_names, template_names};
use serde::Serialize;

/// One thing in a flow that scenarios can exercise.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Element {
    /// The model called the tool.
    Tool {
        /// The tool.
        tool: String,
    },
    /// The user was asked for the parameter with its `ask`.
    Ask {
        /// The tool.
        tool: String,
        /// The parameter.
        param: String,
    },
    /// The slot got a value.
    SlotSet {
        /// The slot.
        slot: String,
    },
    /// The slot's value was used: a parameter was filled from it, or a template or
    /// expression that names `slots.NAME` was evaluated while it held one.
    SlotRead {
        /// The slot.
        slot: String,
    },
    /// An `after` rule's `when` was seen `value`.
    When {
        /// The tool.
        tool: String,
        /// The rule's position among the tool's `after` rules, from 0.
        rule: usize,
        /// What `when` evaluated to.
        value: bool,
    },
    /// An `after` rule without `when` applied.
    After {
        /// The tool.
        tool: String,
        /// The rule's position among the tool's `after` rules, from 0.
        rule: usize,
    },
    /// The tool's `on_error` rule ran.
    OnError {
        /// The tool.
        tool: String,
    },
}

impl Element {
    /// What an uncovered element lacks, for people: "tool `x` was never called".
    #[must_use]
    pub fn uncovered(&self) -> String {
        match self {
            Self::Tool { tool } => format!("tool `{tool}` was never called"),
            Self::Ask { tool, param } => format!("`{tool}.{param}` was never asked for"),
            Self::SlotSet { slot } => format!("slot `{slot}` was never set"),
            Self::SlotRead { slot } => format!("slot `{slot}` was never read"),
            Self::When { tool, rule, value } => format!(
                "`when` of after rule #{} of `{tool}` was never {value}",
                rule + 1
            ),
            Self::After { tool, rule } => {
                format!("after rule #{} of `{tool}` never applied", rule + 1)
            }
            Self::OnError { tool } => format!("`on_error` of `{tool}` never ran"),
        }
    }

    /// The JSON pointer of the key whose line the element is reported on.
    fn pointer(&self) -> String {
        match self {
            Self::Tool { tool } => pointer(&["tools", tool]),
            Self::Ask { tool, param } => pointer(&["tools", tool, "params", param, "ask"]),
            Self::SlotSet { slot } | Self::SlotRead { slot } => pointer(&["slots", slot]),
            Self::When { tool, rule, .. } => {
                pointer(&["tools", tool, "after", &rule.to_string(), "when"])
            }
            Self::After { tool, rule } => pointer(&["tools", tool, "after", &rule.to_string()]),
            Self::OnError { tool } => pointer(&["tools", tool, "on_error"]),
        }
    }
}

/// Every element of `flow`, in file order: slots, then each tool with its parameters'
/// `ask`, its `after` rules and its `on_error`.
#[must_use]
pub fn elements(flow: &Flow) -> Vec<Element> {
    let mut all = Vec::new();
    for slot in flow.slots.keys() {
        all.push(Element::SlotSet { slot: slot.clone() });
        all.push(Element::SlotRead { slot: slot.clone() });
    }
    for (name, tool) in &flow.tools {
        let tool_name = || name.clone();
        all.push(Element::Tool { tool: tool_name() });
        for (param, spec) in &tool.params {
            if spec.ask.is_some() {
                all.push(Element::Ask {
                    tool: tool_name(),
                    param: param.clone(),
                });
            }
        }
        for (rule, after) in tool.after.iter().enumerate() {
            if after.when.is_some() {
                for value in [true, false] {
                    all.push(Element::When {
                        tool: tool_name(),
                        rule,
                        value,
                    });
                }
            } else {
                all.push(Element::After {
                    tool: tool_name(),
                    rule,
                });
            }
        }
        if tool.on_error.is_some() {
            all.push(Element::OnError { tool: tool_name() });
        }
    }
    all
}

/// How often each element was exercised. Elements never hit are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hits(HashMap<Element, u64>);

impl Hits {
    /// Counts one hit of `element`.
    pub fn hit(&mut self, element: Element) {
        *self.0.entry(element).or_default() += 1;
    }

    /// How often `element` was hit.
    #[must_use]
    pub fn get(&self, element: &Element) -> u64 {
        self.0.get(element).copied().unwrap_or_default()
    }

    /// Adds `other`'s hits to these.
    pub fn merge(&mut self, other: &Self) {
        for (element, n) in &other.0 {
            *self.0.entry(element.clone()).or_default() += n;
        }
    }
}

/// The slots each template and expression of a flow names (`slots.NAME`), so that
/// evaluating it counts as reading them.
#[derive(Debug, Default)]
struct Reads {
    instructions: Vec<String>,
    /// (tool, parameter) → the slots its `ask` names.
    ask: HashMap<(String, String), Vec<String>>,
    /// (tool, rule) → the slots its `when` names; and its `set` and `inject`.
    when: HashMap<(String, usize), Vec<String>>,
    body: HashMap<(String, usize), Vec<String>>,
    on_error: HashMap<String, Vec<String>>,
}

impl Reads {
    fn of(flow: &Flow) -> Self {
        let mut reads = Self {
            instructions: template_slots(&flow.assistant.instructions),
            ..Self::default()
        };
        for (name, tool) in &flow.tools {
            for (param, spec) in &tool.params {
                if let Some(ask) = &spec.ask {
                    reads
                        .ask
                        .insert((name.clone(), param.clone()), template_slots(ask));
                }
            }
            for (i, rule) in tool.after.iter().enumerate() {
                if let Some(when) = &rule.when {
                    reads
                        .when
                        .insert((name.clone(), i), slot_names(expression_names(when)));
                }
                let mut body: Vec<String> = rule
                    .set
                    .values()
                    .flat_map(|e| slot_names(expression_names(e)))
                    .collect();
                if let Some(inject) = &rule.inject {
                    body.extend(template_slots(inject));
                }
                reads.body.insert((name.clone(), i), body);
            }
            if let Some(on_error) = &tool.on_error {
                reads
                    .on_error
                    .insert(name.clone(), template_slots(&on_error.inject));
            }
        }
        reads
    }
}

fn template_slots(source: &str) -> Vec<String> {
    slot_names(template_names(source))
}

/// `slots.NAME…` → `NAME`; the flow compiled, so an error here cannot happen (and would
/// only mean no reads are counted).
fn slot_names<E>(names: Result<HashSet<String>, E>) -> Vec<String> {
    let mut slots: Vec<String> = names
        .into_iter()
        .flatten()
        .filter_map(|name| {
            let rest = name.strip_prefix("slots.")?;
            Some(rest.split('.').next().unwrap_or(rest).to_owned())
        })
        .collect();
    slots.sort();
    slots.dedup();
    slots
}

/// Counts one scenario's hits from its events, in order.
#[derive(Debug)]
pub struct Collector {
    flow: Arc<Flow>,
    reads: Reads,
    /// Slots holding a value: a template reads a slot only when it has one.
    holding: HashSet<String>,
    hits: Hits,
}

impl Collector {
    /// A collector for a scenario of `flow` (whose thread starts with no slot values).
    #[must_use]
    pub fn new(flow: Arc<Flow>) -> Self {
        Self {
            reads: Reads::of(&flow),
            flow,
            holding: HashSet::new(),
            hits: Hits::default(),
        }
    }

    /// Counts what `events` exercised.
    pub fn events(&mut self, events: &[Event]) {
        for event in events {
            self.event(event);
        }
    }

    fn event(&mut self, event: &Event) {
        match event {
            Event::ModelCalled { .. } => {
                read(&self.holding, &mut self.hits, &self.reads.instructions);
            }
            Event::ToolCalled { name, .. } if self.flow.tools.contains_key(name) => {
                self.hits.hit(Element::Tool { tool: name.clone() });
            }
            Event::QuestionAsked { tool, params, .. } => {
                for param in params {
                    let key = (tool.clone(), param.clone());
                    if let Some(slots) = self.reads.ask.get(&key) {
                        read(&self.holding, &mut self.hits, slots);
                        let (tool, param) = key;
                        self.hits.hit(Element::Ask { tool, param });
                    }
                }
            }
            Event::SlotSet { name, .. } => {
                self.holding.insert(name.clone());
                self.hits.hit(Element::SlotSet { slot: name.clone() });
            }
            Event::FilledFromSlots { tool, params, .. } => {
                let Some(tool) = self.flow.tools.get(tool) else {
                    return;
                };
                let slots: Vec<String> = params
                    .iter()
                    .filter_map(|p| tool.params.get(p)?.slot.clone())
                    .collect();
                for slot in slots {
                    self.hits.hit(Element::SlotRead { slot });
                }
            }
            Event::RuleEvaluated {
                tool,
                rule,
                applied,
            } => self.rule(tool, *rule, *applied),
            _ => {}
        }
    }

    fn rule(&mut self, tool: &str, rule: RuleRef, applied: bool) {
        let Some(spec) = self.flow.tools.get(tool) else {
            return;
        };
        match rule {
            RuleRef::After { index } => {
                let Some(after) = spec.after.get(index) else {
                    return;
                };
                let key = (tool.to_owned(), index);
                let element = if after.when.is_some() {
                    Element::When {
                        tool: key.0.clone(),
                        rule: index,
                        value: applied,
                    }
                } else {
                    Element::After {
                        tool: key.0.clone(),
                        rule: index,
                    }
                };
                let none = Vec::new();
                read(
                    &self.holding,
                    &mut self.hits,
                    self.reads.when.get(&key).unwrap_or(&none),
                );
                if applied {
                    read(
                        &self.holding,
                        &mut self.hits,
                        self.reads.body.get(&key).unwrap_or(&none),
                    );
                }
                self.hits.hit(element);
            }
            RuleRef::OnError => {
                if let Some(slots) = self.reads.on_error.get(tool) {
                    read(&self.holding, &mut self.hits, slots);
                }
                self.hits.hit(Element::OnError {
                    tool: tool.to_owned(),
                });
            }
            // A kind of rule added to the engine later counts once it is listed here.
            _ => {}
        }
    }

    /// The hits counted.
    #[must_use]
    pub fn finish(self) -> Hits {
        self.hits
    }
}

/// Counts a read of each of `slots` that holds a value.
fn read(holding: &HashSet<String>, hits: &mut Hits, slots: &[String]) {
    for slot in slots {
        if holding.contains(slot) {
            hits.hit(Element::SlotRead { slot: slot.clone() });
        }
    }
}

/// One scenario's hits, with the flow they count for.
#[derive(Debug, Clone)]
pub struct ScenarioHits {
    /// The flow file, as the scenario found it.
    pub flow_path: PathBuf,
    /// The flow.
    pub flow: Arc<Flow>,
    /// What the scenario exercised.
    pub hits: Hits,
}

/// Every scenario's hits, added up per flow file.
#[derive(Debug, Default)]
pub struct Coverage {
    flows: BTreeMap<PathBuf, (PathBuf, Arc<Flow>, Hits)>,
}

impl Coverage {
    /// No flows yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one scenario's hits.
    pub fn add(&mut self, scenario: &ScenarioHits) {
        let key = scenario
            .flow_path
            .canonicalize()
            .unwrap_or_else(|_| scenario.flow_path.clone());
        let entry = self.flows.entry(key).or_insert_with(|| {
            (
                scenario.flow_path.clone(),
                Arc::clone(&scenario.flow),
                Hits::default(),
            )
        });
        entry.2.merge(&scenario.hits);
    }

    /// Each flow's report, its elements on their lines (in the order of the flow paths).
    ///
    /// # Errors
    ///
    /// A flow file that can no longer be read or parsed (it changed while the scenarios
    /// played).
    pub fn reports(&self) -> Result<Vec<FlowReport>, CoverageError> {
        self.flows
            .values()
            .map(|(path, flow, hits)| FlowReport::new(path, flow, hits))
            .collect()
    }
}

/// Why a coverage report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CoverageError {
    /// The flow file cannot be read.
    #[error("cannot read {path} for its coverage report: {reason}")]
    Unreadable {
        /// The flow file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// One element of a flow with its line and hits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Covered {
    /// The element.
    #[serde(flatten)]
    pub element: Element,
    /// The one-based line of the flow file it is reported on.
    pub line: usize,
    /// How often the scenarios exercised it.
    pub hits: u64,
}

/// One flow's coverage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowReport {
    /// `flow.name`.
    pub flow: String,
    /// The flow file, as the scenarios named it.
    pub path: PathBuf,
    /// Every element, in file order.
    pub elements: Vec<Covered>,
}

impl FlowReport {
    fn new(path: &Path, flow: &Flow, hits: &Hits) -> Result<Self, CoverageError> {
        let unreadable = |reason: String| CoverageError::Unreadable {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
        let parsed = toml::de::DeTable::parse(&text).map_err(|e| unreadable(e.to_string()))?;
        let (_, index, _) = spans::to_json(&parsed);
        let source = SourceFile::new(path, text.as_str());
        let mut elements: Vec<Covered> = elements(flow)
            .into_iter()
            .map(|element| Covered {
                line: line_of(&index, &source, &element.pointer()),
                hits: hits.get(&element),
                element,
            })
            .collect();
        elements.sort_by_key(|c| c.line);
        Ok(Self {
            flow: flow.name.clone(),
            path: path.to_path_buf(),
            elements,
        })
    }

    /// Elements exercised at least once.
    #[must_use]
    pub fn covered(&self) -> usize {
        self.elements.iter().filter(|c| c.hits > 0).count()
    }

    /// All elements.
    #[must_use]
    pub fn total(&self) -> usize {
        self.elements.len()
    }

    /// The share covered, in percent (100 for a flow with nothing to cover).
    #[must_use]
    pub fn percent(&self) -> f64 {
        percent(self.covered(), self.total())
    }

    /// The elements never exercised, in file order.
    pub fn uncovered(&self) -> impl Iterator<Item = &Covered> {
        self.elements.iter().filter(|c| c.hits == 0)
    }

    /// Whether the share covered is below `min` percent.
    #[must_use]
    pub fn below(&self, min: f64) -> bool {
        count(self.covered()) * 100.0 < min * count(self.total())
    }
}

/// `covered` of `total` in percent; 100 when there is nothing to cover.
#[must_use]
pub fn percent(covered: usize, total: usize) -> f64 {
    if total == 0 {
        100.0
    } else {
        count(covered) * 100.0 / count(total)
    }
}

/// A count of elements as a float (no flow has 2³² elements).
fn count(n: usize) -> f64 {
    f64::from(u32::try_from(n).unwrap_or(u32::MAX))
}

/// The line of the key at `at` (or of its value, or of the nearest ancestor).
fn line_of(index: &SpanIndex, source: &SourceFile, at: &str) -> usize {
    let offset = index.key_span(at).map_or(0, |span| span.start);
    source.line_column(offset).line
}

#[cfg(test)]
mod tests;
