//! Scenario coverage: which parts of a flow its scenarios exercised.
//!
//! A flow's *elements* are the things a conversation can exercise: each tool (called by
//! the model), each parameter's `ask` (asked), `invalid` (asked after a rejected value) and
//! `max_asks` (ran out), each slot (set, and read), each `after` rule (its `when` seen true
//! and seen false, or, without `when`, applied) and each `on_error` (ran). [`FlowIndex`] lists them from the validated flow; [`Collector`] counts hits from
//! the engine's events while a scenario plays — the same events transcripts come from,
//! plus two that exist for this ([`Event::FilledFromSlots`], [`Event::RuleEvaluated`]);
//! [`Coverage`] adds up every scenario's hits per flow and, given the flow file's spans,
//! puts each element on its line for the terminal summary, JSON and LCOV ([`render`]).
//!
//! Counting happens here, not in the CLI, so a Rust test can ask for the same numbers
//! (`Runner::with_coverage`). It is opt-in: without it, no collector runs.

pub mod render;

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use clarion_engine::{Event, RuleRef};
use clarion_flow::model::AfterRule;
use clarion_flow::source::SourceFile;
use clarion_flow::spans::{self, SpanIndex, pointer};
use clarion_flow::template::{expression_names, template_names};
use clarion_flow::{Flow, OnExhausted};
use serde::Serialize;

/// One thing in a flow that scenarios can exercise. Non-exhaustive: confirmations and
/// handoffs join when the format has them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Element {
    /// The model called the tool.
    Tool {
        /// The tool.
        tool: String,
    },
    /// The user was asked for the parameter with its `ask` (required parameters only).
    Ask {
        /// The tool.
        tool: String,
        /// The parameter.
        param: String,
    },
    /// The user was asked for the parameter with its `invalid` message: the model's value
    /// had failed the schema.
    Invalid {
        /// The tool.
        tool: String,
        /// The parameter.
        param: String,
    },
    /// The parameter's `max_asks` ran out and the call was given up (`on_exhausted`).
    Exhausted {
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
            Self::Invalid { tool, param } => {
                format!("`{tool}.{param}` was never rejected and asked with `invalid`")
            }
            Self::Exhausted { tool, param } => {
                format!("`{tool}.{param}` never ran out of asks (`max_asks`)")
            }
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
            Self::Invalid { tool, param } => pointer(&["tools", tool, "params", param, "invalid"]),
            Self::Exhausted { tool, param } => {
                pointer(&["tools", tool, "params", param, "max_asks"])
            }
            Self::SlotSet { slot } | Self::SlotRead { slot } => pointer(&["slots", slot]),
            Self::When { tool, rule, .. } => {
                pointer(&["tools", tool, "after", &rule.to_string(), "when"])
            }
            Self::After { tool, rule } => pointer(&["tools", tool, "after", &rule.to_string()]),
            Self::OnError { tool } => pointer(&["tools", tool, "on_error"]),
        }
    }
}

/// What counting needs of a flow, worked out once and shared by the collectors of all its
/// scenarios: its elements, and for each event a collector sees, which element positions it
/// hits and which slots the templates it evaluated name (compiling templates once per
/// scenario, or hashing element names per event, would cost more than the counting).
#[derive(Debug)]
pub struct FlowIndex {
    flow: Arc<Flow>,
    elements: Vec<Element>,
    /// Slot name → its number: a position in `slot_set`, `slot_read` and a collector's
    /// `holding`.
    slot_numbers: HashMap<String, usize>,
    /// Per slot number, the position of its `SlotSet` and `SlotRead` elements.
    slot_set: Vec<usize>,
    slot_read: Vec<usize>,
    /// The slots (numbers) `instructions` names.
    instructions: Vec<usize>,
    tools: HashMap<String, ToolIndex>,
}

/// One tool's elements.
#[derive(Debug)]
struct ToolIndex {
    called: usize,
    /// Parameter → its `Ask` element and the slots its `ask` names.
    asks: HashMap<String, Counted>,
    /// Parameter → its `Invalid` element and the slots its `invalid` names.
    invalids: HashMap<String, Counted>,
    /// Parameter → its `Exhausted` element and the slots its `on_exhausted` names.
    exhausts: HashMap<String, Counted>,
    /// Parameter → the number of the slot it is filled from.
    fills: HashMap<String, usize>,
    after: Vec<RuleIndex>,
    on_error: Option<Counted>,
}

/// An element, and the slots (numbers) the template behind it names.
#[derive(Debug)]
struct Counted {
    element: usize,
    reads: Vec<usize>,
}

/// One `after` rule's elements: `When` true and false, or `After` for a rule without `when`.
#[derive(Debug)]
struct RuleIndex {
    when: Option<(usize, usize)>,
    applied: Option<usize>,
    /// The slots its `when` names; those its `set` and `inject` name (read when it applies).
    when_reads: Vec<usize>,
    body_reads: Vec<usize>,
}

impl RuleIndex {
    /// Indexes `tool`'s `after` rule number `rule` (from 0), adding its elements.
    fn new(
        elements: &mut Vec<Element>,
        slot_numbers: &HashMap<String, usize>,
        tool: &str,
        rule: usize,
        spec: &AfterRule,
    ) -> Self {
        let when = spec.when.as_ref().map(|_| {
            let mut outcome = |value| {
                let element = Element::When {
                    tool: tool.to_owned(),
                    rule,
                    value,
                };
                push(elements, element)
            };
            (outcome(true), outcome(false))
        });
        let applied = when.is_none().then(|| {
            let element = Element::After {
                tool: tool.to_owned(),
                rule,
            };
            push(elements, element)
        });
        let mut body: Vec<String> = spec
            .set
            .values()
            .flat_map(|e| slot_names(expression_names(e)))
            .collect();
        if let Some(inject) = &spec.inject {
            body.extend(template_slots(inject));
        }
        let when_names = spec.when.as_deref().map(expression_names);
        Self {
            when,
            applied,
            when_reads: numbers(
                slot_numbers,
                &when_names.map(slot_names).unwrap_or_default(),
            ),
            body_reads: numbers(slot_numbers, &body),
        }
    }
}

/// The numbers of the slots `names` (names that are not slots have none).
fn numbers(slot_numbers: &HashMap<String, usize>, names: &[String]) -> Vec<usize> {
    names
        .iter()
        .filter_map(|name| slot_numbers.get(name).copied())
        .collect()
}

fn push(elements: &mut Vec<Element>, element: Element) -> usize {
    elements.push(element);
    elements.len() - 1
}

impl FlowIndex {
    /// Indexes `flow`'s elements: slots, then each tool with its required parameters'
    /// `ask`, its `after` rules and its `on_error` (reports sort them by line).
    #[must_use]
    pub fn new(flow: Arc<Flow>) -> Self {
        let mut elements = Vec::new();
        let mut slot_numbers = HashMap::new();
        let (mut slot_set, mut slot_read) = (Vec::new(), Vec::new());
        for (n, slot) in flow.slots.keys().enumerate() {
            slot_numbers.insert(slot.clone(), n);
            slot_set.push(push(&mut elements, Element::SlotSet { slot: slot.clone() }));
            slot_read.push(push(
                &mut elements,
                Element::SlotRead { slot: slot.clone() },
            ));
        }
        let numbers = |names: Vec<String>| numbers(&slot_numbers, &names);
        let instructions = numbers(template_slots(&flow.assistant.instructions));
        let mut tools = HashMap::new();
        for (name, tool) in &flow.tools {
            let tool_name = || name.clone();
            let called = push(&mut elements, Element::Tool { tool: tool_name() });
            let mut asks = HashMap::new();
            let mut invalids = HashMap::new();
            let mut exhausts = HashMap::new();
            let mut fills = HashMap::new();
            for (param, spec) in &tool.params {
                // Only a required parameter is ever asked for: an optional one's `ask`
                // could never be covered.
                if let (Some(ask), true) = (&spec.ask, spec.required) {
                    let element = Element::Ask {
                        tool: tool_name(),
                        param: param.clone(),
                    };
                    let counted = Counted {
                        element: push(&mut elements, element),
                        reads: numbers(template_slots(ask)),
                    };
                    asks.insert(param.clone(), counted);
                }
                if let (Some(invalid), true) = (&spec.invalid, spec.required) {
                    let element = Element::Invalid {
                        tool: tool_name(),
                        param: param.clone(),
                    };
                    let counted = Counted {
                        element: push(&mut elements, element),
                        reads: numbers(template_slots(invalid)),
                    };
                    invalids.insert(param.clone(), counted);
                }
                if let (Some(_), true) = (spec.max_asks, spec.required) {
                    let element = Element::Exhausted {
                        tool: tool_name(),
                        param: param.clone(),
                    };
                    let reads = match &spec.on_exhausted {
                        Some(OnExhausted::Inject(text) | OnExhausted::End(text)) => {
                            numbers(template_slots(text))
                        }
                        Some(OnExhausted::HandOff(_)) | None => Vec::new(),
                    };
                    let counted = Counted {
                        element: push(&mut elements, element),
                        reads,
                    };
                    exhausts.insert(param.clone(), counted);
                }
                if let Some(&n) = spec.slot.as_ref().and_then(|s| slot_numbers.get(s)) {
                    fills.insert(param.clone(), n);
                }
            }
            let after = (tool.after.iter().enumerate())
                .map(|(rule, spec)| RuleIndex::new(&mut elements, &slot_numbers, name, rule, spec))
                .collect();
            let on_error = tool.on_error.as_ref().map(|rule| Counted {
                element: push(&mut elements, Element::OnError { tool: tool_name() }),
                reads: numbers(template_slots(&rule.inject)),
            });
            let index = ToolIndex {
                called,
                asks,
                invalids,
                exhausts,
                fills,
                after,
                on_error,
            };
            tools.insert(name.clone(), index);
        }
        Self {
            flow,
            elements,
            slot_numbers,
            slot_set,
            slot_read,
            instructions,
            tools,
        }
    }

    /// The flow.
    #[must_use]
    pub fn flow(&self) -> &Arc<Flow> {
        &self.flow
    }

    /// Every element, in the order hits are counted in.
    #[must_use]
    pub fn elements(&self) -> &[Element] {
        &self.elements
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

/// The indexes of the flows a runner's scenarios played, one per loaded flow.
#[derive(Debug, Default)]
pub(crate) struct Indexes(Mutex<Vec<Arc<FlowIndex>>>);

impl Indexes {
    /// The index of `flow`, made on first use. An index holds its flow, so the flow's
    /// address identifies it for as long as the entry exists.
    pub(crate) fn get(&self, flow: &Arc<Flow>) -> Arc<FlowIndex> {
        let Ok(mut indexes) = self.0.lock() else {
            return Arc::new(FlowIndex::new(Arc::clone(flow)));
        };
        if let Some(index) = indexes.iter().find(|i| Arc::ptr_eq(&i.flow, flow)) {
            return Arc::clone(index);
        }
        let index = Arc::new(FlowIndex::new(Arc::clone(flow)));
        indexes.push(Arc::clone(&index));
        index
    }
}

/// How often each element of one flow was exercised.
#[derive(Debug, Clone)]
pub struct Hits {
    index: Arc<FlowIndex>,
    /// Per element, in the index's order.
    counts: Vec<u64>,
}

impl Hits {
    /// No hits yet.
    #[must_use]
    pub fn new(index: Arc<FlowIndex>) -> Self {
        Self {
            counts: vec![0; index.elements.len()],
            index,
        }
    }

    /// The flow.
    #[must_use]
    pub fn flow(&self) -> &Arc<Flow> {
        &self.index.flow
    }

    /// How often `element` was hit (0 for an element the flow does not have).
    #[must_use]
    pub fn get(&self, element: &Element) -> u64 {
        self.position(element)
            .and_then(|i| self.counts.get(i).copied())
            .unwrap_or_default()
    }

    /// Adds `n` hits of `element` (none if the flow does not have it).
    pub fn add(&mut self, element: &Element, n: u64) {
        if let Some(count) = self.position(element).and_then(|i| self.counts.get_mut(i)) {
            *count += n;
        }
    }

    /// Adds `other`'s hits to these: the same elements, matched by name when `other` was
    /// counted against another index of the flow.
    pub fn merge(&mut self, other: &Self) {
        if Arc::ptr_eq(&self.index, &other.index) {
            for (count, n) in self.counts.iter_mut().zip(&other.counts) {
                *count += n;
            }
        } else {
            for (element, n) in other.index.elements.iter().zip(&other.counts) {
                self.add(element, *n);
            }
        }
    }

    fn position(&self, element: &Element) -> Option<usize> {
        self.index.elements.iter().position(|e| e == element)
    }
}

/// Counts one scenario's hits from its events, in order.
#[derive(Debug)]
pub struct Collector {
    index: Arc<FlowIndex>,
    /// Per slot number, whether it holds a value: a template reads a slot only then.
    holding: Vec<bool>,
    /// (tool, parameter) whose value was rejected since the last question: that
    /// question's text for it is the `invalid` message.
    rejected: Vec<(String, String)>,
    counts: Vec<u64>,
}

impl Collector {
    /// A collector for a scenario of the indexed flow (whose thread starts with no slot
    /// values).
    #[must_use]
    pub fn new(index: Arc<FlowIndex>) -> Self {
        Self {
            holding: vec![false; index.slot_set.len()],
            rejected: Vec::new(),
            counts: vec![0; index.elements.len()],
            index,
        }
    }

    /// Counts what `events` exercised.
    pub fn events(&mut self, events: &[Event]) {
        let index = Arc::clone(&self.index);
        for event in events {
            self.event(&index, event);
        }
    }

    fn event(&mut self, index: &FlowIndex, event: &Event) {
        match event {
            Event::ModelCalled { .. } => self.read(index, &index.instructions),
            Event::ToolCalled { name, .. } => {
                if let Some(tool) = index.tools.get(name) {
                    self.hit(tool.called);
                }
            }
            Event::QuestionAsked {
                tool: name, params, ..
            } => {
                let Some(tool) = index.tools.get(name) else {
                    return;
                };
                let rejected = std::mem::take(&mut self.rejected);
                for param in params {
                    let was_rejected = rejected.iter().any(|(t, p)| t == name && p == param);
                    let asked = if was_rejected {
                        tool.invalids.get(param)
                    } else {
                        tool.asks.get(param)
                    };
                    if let Some(asked) = asked {
                        self.read(index, &asked.reads);
                        self.hit(asked.element);
                    }
                }
            }
            Event::ValueRejected { tool, param, .. } => {
                self.rejected.push((tool.clone(), param.clone()));
            }
            Event::AsksExhausted { tool, params, .. } => {
                self.rejected.clear();
                let Some(tool) = index.tools.get(tool) else {
                    return;
                };
                for exhausted in params.iter().filter_map(|p| tool.exhausts.get(p)) {
                    self.read(index, &exhausted.reads);
                    self.hit(exhausted.element);
                }
            }
            Event::SlotSet { name, .. } => {
                if let Some(&n) = index.slot_numbers.get(name) {
                    if let Some(holding) = self.holding.get_mut(n) {
                        *holding = true;
                    }
                    self.hit_slot(&index.slot_set, n);
                }
            }
            Event::FilledFromSlots { tool, params, .. } => {
                let Some(tool) = index.tools.get(tool) else {
                    return;
                };
                for &n in params.iter().filter_map(|p| tool.fills.get(p)) {
                    self.hit_slot(&index.slot_read, n);
                }
            }
            Event::RuleEvaluated {
                tool,
                rule,
                applied,
            } => {
                if let Some(tool) = index.tools.get(tool) {
                    self.rule(index, tool, *rule, *applied);
                }
            }
            _ => {}
        }
    }

    fn rule(&mut self, index: &FlowIndex, tool: &ToolIndex, rule: RuleRef, applied: bool) {
        match rule {
            RuleRef::After { index: i } => {
                let Some(after) = tool.after.get(i) else {
                    return;
                };
                self.read(index, &after.when_reads);
                match (after.when, after.applied) {
                    (Some((true_, false_)), _) => self.hit(if applied { true_ } else { false_ }),
                    (None, Some(element)) if applied => self.hit(element),
                    _ => {}
                }
                if applied {
                    self.read(index, &after.body_reads);
                }
            }
            RuleRef::OnError => {
                if let Some(on_error) = &tool.on_error {
                    self.read(index, &on_error.reads);
                    self.hit(on_error.element);
                }
            }
            // A kind of rule added to the engine later counts once it is listed here.
            _ => {}
        }
    }

    fn hit(&mut self, element: usize) {
        if let Some(count) = self.counts.get_mut(element) {
            *count += 1;
        }
    }

    /// A hit of slot `n`'s element in `elements` (`slot_set` or `slot_read`).
    fn hit_slot(&mut self, elements: &[usize], n: usize) {
        if let Some(&element) = elements.get(n) {
            self.hit(element);
        }
    }

    /// Counts a read of each of `slots` that holds a value.
    fn read(&mut self, index: &FlowIndex, slots: &[usize]) {
        for &n in slots {
            if self.holding.get(n).copied().unwrap_or_default() {
                self.hit_slot(&index.slot_read, n);
            }
        }
    }

    /// The hits counted.
    #[must_use]
    pub fn finish(self) -> Hits {
        Hits {
            index: self.index,
            counts: self.counts,
        }
    }
}

/// One scenario's hits, with the flow file they count for.
#[derive(Debug, Clone)]
pub struct ScenarioHits {
    /// The flow file, as the scenario found it.
    pub flow_path: PathBuf,
    /// What the scenario exercised.
    pub hits: Hits,
}

/// Every scenario's hits, added up per flow file.
#[derive(Debug, Default)]
pub struct Coverage {
    flows: BTreeMap<PathBuf, (PathBuf, Hits)>,
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
        match self.flows.entry(key) {
            Entry::Occupied(mut entry) => entry.get_mut().1.merge(&scenario.hits),
            Entry::Vacant(entry) => {
                entry.insert((scenario.flow_path.clone(), scenario.hits.clone()));
            }
        }
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
            .map(|(path, hits)| FlowReport::new(path, hits))
            .collect()
    }
}

/// Why a coverage report could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    fn new(path: &Path, hits: &Hits) -> Result<Self, CoverageError> {
        let unreadable = |reason: String| CoverageError::Unreadable {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
        let parsed = toml::de::DeTable::parse(&text).map_err(|e| unreadable(e.to_string()))?;
        let (_, index, _) = spans::to_json(&parsed);
        let source = SourceFile::new(path, text.as_str());
        let mut elements: Vec<Covered> = hits
            .index
            .elements
            .iter()
            .zip(&hits.counts)
            .map(|(element, &hits)| Covered {
                line: line_of(&index, &source, &element.pointer()),
                hits,
                element: element.clone(),
            })
            .collect();
        elements.sort_by_key(|c| c.line);
        Ok(Self {
            flow: hits.index.flow.name.clone(),
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
