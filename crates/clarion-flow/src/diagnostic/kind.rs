//! Every problem `clarion validate` can report, one variant each.
//!
//! The variant's `Display` is the one-line message; [`DiagnosticKind::code`] is its stable
//! code. Codes never change meaning once released: tools and CI scripts match on them, and
//! `docs/diagnostics.md` lists them. Errors are `E…`, warnings `W…`; a warning never stops a
//! flow from loading unless the caller asks for `--deny-warnings`.

use thiserror::Error;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The flow works, but probably not the way its author meant.
    Warning,
    /// The flow cannot be loaded.
    Error,
}

/// What went wrong, with the names involved. `Display` is the diagnostic's message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DiagnosticKind {
    /// The file could not be read, or is not UTF-8.
    #[error("cannot read the flow file: {reason}")]
    Unreadable {
        /// Why, as the operating system or decoder said it.
        reason: String,
    },
    /// TOML syntax error.
    #[error("invalid TOML: {message}")]
    TomlSyntax {
        /// The parser's message.
        message: String,
    },
    /// The same key or table is defined twice.
    #[error("`{key}` is defined more than once")]
    DuplicateKey {
        /// The dotted key.
        key: String,
    },
    /// A key that the flow format does not know, usually a typo.
    #[error("unknown key `{key}` in {table}")]
    UnknownKey {
        /// The key as written.
        key: String,
        /// Where it was found, e.g. `[tools.lookup]`.
        table: String,
    },
    /// A value of the wrong TOML type.
    #[error("`{key}` must be {expected}, found {found}")]
    WrongType {
        /// The dotted key.
        key: String,
        /// The expected type, in words.
        expected: String,
        /// The type written, in words.
        found: String,
    },
    /// A required key is absent.
    #[error("missing key `{key}` in {table}")]
    MissingKey {
        /// The missing key.
        key: String,
        /// The table that needs it.
        table: String,
    },
    /// A value of the right type that is not allowed (out of range, not one of the options…).
    #[error("invalid value for `{key}`: {reason}")]
    InvalidValue {
        /// The dotted key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tool with nothing to run it.
    #[error("tool `{tool}` has no executor")]
    NoExecutor {
        /// The tool's name.
        tool: String,
    },
    /// A tool with more than one way to run it.
    #[error("tool `{tool}` has more than one executor: {found}")]
    MultipleExecutors {
        /// The tool's name.
        tool: String,
        /// The executors found, e.g. "`builtin` and `http`".
        found: String,
    },
    /// A parameter or slot schema that is not valid JSON Schema.
    #[error("invalid JSON Schema for {owner}: {reason}")]
    InvalidSchema {
        /// e.g. "parameter `goal_amount` of tool `plan`".
        owner: String,
        /// The meta-schema's complaint.
        reason: String,
    },
    /// A reference to a slot that is not declared under `[slots]`.
    #[error("slot `{slot}` is not declared")]
    UndeclaredSlot {
        /// The slot name used.
        slot: String,
    },
    /// A parameter remembered into a slot of another type.
    #[error("parameter `{param}` has type {param_type} but slot `{slot}` has type {slot_type}")]
    SlotTypeConflict {
        /// The parameter.
        param: String,
        /// The slot.
        slot: String,
        /// The parameter's JSON Schema type(s).
        param_type: String,
        /// The slot's JSON Schema type(s).
        slot_type: String,
    },
    /// A template that does not compile.
    #[error("{what} is not a valid template: {message}")]
    TemplateSyntax {
        /// Which template, e.g. "`inject`".
        what: String,
        /// MiniJinja's message.
        message: String,
    },
    /// A `when` or `set` expression that does not compile.
    #[error("{what} is not a valid expression: {message}")]
    ExpressionSyntax {
        /// Which expression, e.g. "`when`".
        what: String,
        /// MiniJinja's message.
        message: String,
    },
    /// A template or expression that uses a name not in its scope.
    #[error("`{name}` is not defined here")]
    UndefinedName {
        /// The name as used, e.g. `args.goal` or `reslt`.
        name: String,
    },
    /// `{{ env.NAME }}` for a variable the tool does not allow-list.
    #[error("environment variable `{var}` is not allow-listed for tool `{tool}`")]
    EnvNotAllowed {
        /// The variable.
        var: String,
        /// The tool whose template reads it.
        tool: String,
    },
    /// A tool name providers reject.
    #[error("tool name `{name}` is not accepted by model providers")]
    InvalidToolName {
        /// The name.
        name: String,
    },
    /// A parameter or slot name that templates and providers cannot use.
    #[error("{kind} name `{name}` is not valid")]
    InvalidName {
        /// "parameter" or "slot".
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A `$ref` that points at a file that cannot be used.
    #[error("cannot use schema file `{path}`: {reason}")]
    SchemaRef {
        /// The path as written.
        path: String,
        /// Why.
        reason: String,
    },
    /// `strict = true` on a tool whose schemas use keywords strict mode does not support.
    #[error("tool `{tool}` asks for strict mode, but {reason}")]
    StrictUnsupported {
        /// The tool.
        tool: String,
        /// Which keyword, where.
        reason: String,
    },
    /// A scenario file that cannot be read, or is not UTF-8.
    #[error("cannot read the scenario file: {reason}")]
    ScenarioUnreadable {
        /// Why.
        reason: String,
    },
    /// A scenario whose flow cannot be found or does not load.
    #[error("cannot use flow `{path}`: {reason}")]
    ScenarioFlow {
        /// The flow's path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A scenario naming a tool its flow does not have.
    #[error("flow `{flow}` has no tool `{tool}`")]
    UnknownTool {
        /// The tool as written.
        tool: String,
        /// The flow's name.
        flow: String,
    },
    /// A scenario naming a parameter the tool does not have.
    #[error("`{param}` is not a parameter of {owner}")]
    UnknownParam {
        /// The parameter as written.
        param: String,
        /// e.g. "tool `plan`".
        owner: String,
    },
    /// A mock for a tool that no model step calls.
    #[error("the mock for `{tool}` is never used")]
    UnusedMock {
        /// The tool.
        tool: String,
    },
    /// The engine asked the model for more steps than the turn scripts.
    #[error(
        "turn {turn} runs out of model steps: the conversation needs more than the {scripted} scripted"
    )]
    ScriptExhausted {
        /// The turn, counting from 1.
        turn: usize,
        /// Steps the turn scripts.
        scripted: usize,
    },
    /// Model steps the conversation never reached.
    #[error("turn {turn} scripts {unused} model step(s) the conversation never reaches")]
    ScriptUnused {
        /// The turn, counting from 1.
        turn: usize,
        /// Steps left over.
        unused: usize,
    },
    /// Two keys that exclude each other.
    #[error("`{first}` and `{second}` cannot be used together")]
    ConflictingKeys {
        /// One key.
        first: String,
        /// The other.
        second: String,
    },
    /// An entry that needs one of several keys and has none.
    #[error("{what} needs {choices}")]
    MissingChoice {
        /// e.g. "this model step".
        what: String,
        /// e.g. "`text`, `call` or `calls`".
        choices: String,
    },
    /// A mock for a client tool, whose output comes from the app.
    #[error("`{tool}` is a client tool: its output comes from the app, not from a mock")]
    ClientToolMocked {
        /// The tool.
        tool: String,
    },
    /// A submitted output for a tool that is not a client tool.
    #[error("`{tool}` is not a client tool: the app cannot submit its output")]
    NotClientTool {
        /// The tool.
        tool: String,
    },
    /// A tool call with no mock, that nothing else may run.
    #[error("`{tool}` is called but has no mock: {reason}")]
    Unmocked {
        /// The tool.
        tool: String,
        /// Why it cannot run without one.
        reason: String,
    },
    /// Client tool outputs that do not match what the run waits for.
    #[error("turn {turn}: {reason}")]
    SubmitMismatch {
        /// The turn, counting from 1.
        turn: usize,
        /// What does not match.
        reason: String,
    },
    /// The engine refused a turn.
    #[error("turn {turn} cannot be played: {message}")]
    TurnRefused {
        /// The turn, counting from 1.
        turn: usize,
        /// The engine's error.
        message: String,
    },
    /// The model a live or replayed scenario needs cannot be used.
    #[error("cannot use the model: {reason}")]
    ModelUnavailable {
        /// Why.
        reason: String,
    },
    /// A `[turns.expect]` assertion that did not hold.
    #[error("`{expectation}` expectation failed: {detail}")]
    ExpectationFailed {
        /// The expectation's key, e.g. `tool_called`.
        expectation: String,
        /// What happened instead.
        detail: String,
    },
    /// A required parameter with no question to ask when it is missing.
    #[error("required parameter `{param}` has no `ask`")]
    MissingAsk {
        /// The parameter.
        param: String,
    },
    /// A slot that nothing reads or writes.
    #[error("slot `{slot}` is never used")]
    UnusedSlot {
        /// The slot.
        slot: String,
    },
    /// A tool with no description: the model chooses tools by their descriptions.
    #[error("tool `{tool}` has no description")]
    MissingToolDescription {
        /// The tool.
        tool: String,
    },
    /// A parameter with no description: the model fills arguments by their descriptions.
    #[error("parameter `{param}` of tool `{tool}` has no description")]
    MissingParamDescription {
        /// The tool.
        tool: String,
        /// The parameter.
        param: String,
    },
    /// `ask` on an optional parameter, which is never asked for.
    #[error("optional parameter `{param}` has an `ask` that is never used")]
    AskOnOptional {
        /// The parameter.
        param: String,
    },
    /// An `after` rule with neither `inject` nor `set`.
    #[error("this `after` rule of tool `{tool}` does nothing")]
    EmptyAfterRule {
        /// The tool.
        tool: String,
    },
    /// `builtin = "…"` names a function the built-in catalog does not have (checked only
    /// when the loader is given a catalog).
    #[error("unknown built-in `{name}`")]
    UnknownBuiltin {
        /// The name as written.
        name: String,
    },
    /// A tool's parameters do not fit the built-in function it names.
    #[error("tool `{tool}` does not match built-in `{builtin}`: {reason}")]
    BuiltinMismatch {
        /// The tool.
        tool: String,
        /// The built-in's name.
        builtin: String,
        /// What does not fit, e.g. "parameter `years` is a number here, but the built-in
        /// takes an integer".
        reason: String,
    },
    /// `grounded = true` on a parameter whose values cannot be found in what the user said.
    #[error("parameter `{param}` is grounded, but {found}: only numbers and strings can be")]
    GroundedType {
        /// The parameter.
        param: String,
        /// What its type is, e.g. "its type is `boolean`" or "it has no `type`".
        found: String,
    },
    /// `follows` naming something that is not another tool of the flow.
    #[error("tool `{tool}` follows `{name}`, which is not another tool of this flow")]
    UnknownFollowedTool {
        /// The tool with `follows`.
        tool: String,
        /// The name as written.
        name: String,
    },
    /// `confirm` on a client tool, which the app runs (and confirms) itself.
    #[error("tool `{tool}` asks for confirmation but is a client tool")]
    ConfirmOnClientTool {
        /// The tool.
        tool: String,
    },
    /// `mcp = "…"` naming a server the flow does not declare under `[mcp]`.
    #[error("tool `{tool}` uses MCP server `{server}`, which is not declared")]
    UnknownMcpServer {
        /// The tool.
        tool: String,
        /// The server's name as written.
        server: String,
    },
    /// An MCP tool the lock file does not list: the server does not have it, or the lock
    /// is older than the flow.
    #[error("MCP server `{server}` has no tool `{remote}` in the lock file")]
    McpToolNotLocked {
        /// The server.
        server: String,
        /// The tool's name on the server.
        remote: String,
    },
    /// A tool's parameters widen, or do not fit, the MCP tool's input schema.
    #[error("tool `{tool}` does not match MCP tool `{remote}`: {reason}")]
    McpMismatch {
        /// The tool.
        tool: String,
        /// The tool's name on the server.
        remote: String,
        /// What does not fit.
        reason: String,
    },
    /// The lock file of a flow with MCP servers is missing or cannot be read.
    #[error("the MCP lock file cannot be used: {reason}")]
    McpLockUnusable {
        /// Why.
        reason: String,
    },
    /// What a server lists now differs from its lock (`clarion validate --connect`).
    #[error("MCP server `{server}` no longer matches the lock file: {reason}")]
    McpDrift {
        /// The server.
        server: String,
        /// What changed.
        reason: String,
    },
    /// `invalid` on a parameter whose schema only annotates: no value can fail it, so the
    /// message would never be asked.
    #[error(
        "parameter `{param}` has an `invalid` message, but its schema has no constraint a value could fail"
    )]
    InvalidCannotFail {
        /// The parameter.
        param: String,
    },
    /// `max_asks = 0`: the parameter could never be asked for.
    #[error("`max_asks = 0` on parameter `{param}` would never let the user be asked")]
    MaxAsksZero {
        /// The parameter.
        param: String,
    },
    /// `on_exhausted` without `max_asks`: asking has no limit, so it is never exhausted.
    #[error("parameter `{param}` has `on_exhausted` but no `max_asks`, so it never applies")]
    OnExhaustedWithoutMaxAsks {
        /// The parameter.
        param: String,
    },
    /// `invalid`, `max_asks` or `on_exhausted` on an optional parameter, which is never
    /// asked for.
    #[error(
        "optional parameter `{param}` has `{key}`, but optional parameters are never asked for"
    )]
    AskingKeyOnOptional {
        /// The parameter.
        param: String,
        /// The key: `invalid`, `max_asks` or `on_exhausted`.
        key: String,
    },
    /// `flow = "…"` naming a flow that cannot be found.
    #[error("tool `{tool}` hands off to `{flow}`, but {reason}")]
    UnknownFlow {
        /// The tool.
        tool: String,
        /// The flow as written.
        flow: String,
        /// What was found instead, e.g. "there is no file `flows/travel.toml`".
        reason: String,
    },
    /// `flow = "…"` naming a flow that has errors of its own.
    #[error("tool `{tool}` hands off to flow `{flow}`, which has {errors} error(s)")]
    LinkedFlowInvalid {
        /// The tool.
        tool: String,
        /// The flow.
        flow: String,
        /// How many errors it has.
        errors: usize,
    },
    /// Handoffs that lead back to a flow already on the way: `a → b → a`.
    #[error("tool `{tool}` hands off in a cycle: {cycle}")]
    HandoffCycle {
        /// The tool.
        tool: String,
        /// The flows, e.g. `front-desk → travel-booking → front-desk`.
        cycle: String,
    },
    /// `with` or `returns` naming a slot a flow does not declare.
    #[error("{key} of tool `{tool}` names slot `{slot}`, which flow `{flow}` does not declare")]
    HandoffUnknownSlot {
        /// The tool.
        tool: String,
        /// `with` or `returns`.
        key: String,
        /// The slot as written.
        slot: String,
        /// The flow that lacks it.
        flow: String,
    },
    /// `with` or `returns` moving a value into a slot of another type.
    #[error("{key} of tool `{tool}` fills {to} ({to_type}) from {from} ({from_type})")]
    HandoffSlotType {
        /// The tool.
        tool: String,
        /// `with` or `returns`.
        key: String,
        /// Where the value comes from, e.g. "parameter `city`".
        from: String,
        /// Its JSON Schema type(s).
        from_type: String,
        /// Where it goes, e.g. "slot `destination` of `travel-booking`".
        to: String,
        /// Its JSON Schema type(s).
        to_type: String,
    },
    /// `on_exhausted = { hand_off = "…" }` naming no flow tool of this flow.
    #[error("parameter `{param}` hands off through `{tool}` when its asks run out, but {reason}")]
    HandOffNotFlowTool {
        /// The parameter.
        param: String,
        /// The tool named.
        tool: String,
        /// What it is instead, e.g. "the flow has no tool `desk`".
        reason: String,
    },
    /// `with` or `returns` on a tool that hands off to no flow.
    #[error("tool `{tool}` has `{key}`, but no `flow` to hand off to")]
    HandoffKeyWithoutFlow {
        /// The tool.
        tool: String,
        /// `with` or `returns`.
        key: String,
    },
    /// A tool named like the one Clarion adds itself.
    #[error("tool name `{name}` is reserved: {reason}")]
    ReservedToolName {
        /// The name.
        name: String,
        /// Why, e.g. "with `tool_choice = \"required\"` Clarion adds its own `reply` tool".
        reason: String,
    },
}

impl DiagnosticKind {
    /// The stable code, e.g. `E004`.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreadable { .. } => "E001",
            Self::TomlSyntax { .. } => "E002",
            Self::DuplicateKey { .. } => "E003",
            Self::UnknownKey { .. } => "E004",
            Self::WrongType { .. } => "E005",
            Self::MissingKey { .. } => "E006",
            Self::InvalidValue { .. } => "E007",
            Self::NoExecutor { .. } => "E008",
            Self::MultipleExecutors { .. } => "E009",
            Self::InvalidSchema { .. } => "E010",
            Self::UndeclaredSlot { .. } => "E011",
            Self::SlotTypeConflict { .. } => "E012",
            Self::TemplateSyntax { .. } => "E013",
            Self::ExpressionSyntax { .. } => "E014",
            Self::UndefinedName { .. } => "E015",
            Self::EnvNotAllowed { .. } => "E016",
            Self::InvalidToolName { .. } => "E017",
            Self::InvalidName { .. } => "E018",
            Self::SchemaRef { .. } => "E019",
            Self::StrictUnsupported { .. } => "E020",
            Self::UnknownBuiltin { .. } => "E021",
            Self::BuiltinMismatch { .. } => "E022",
            Self::GroundedType { .. } => "E023",
            Self::ReservedToolName { .. } => "E024",
            Self::UnknownFollowedTool { .. } => "E025",
            Self::UnknownMcpServer { .. } => "E026",
            Self::McpToolNotLocked { .. } => "E027",
            Self::McpMismatch { .. } => "E028",
            Self::McpLockUnusable { .. } => "E029",
            Self::McpDrift { .. } => "E030",
            Self::InvalidCannotFail { .. } => "E031",
            Self::MaxAsksZero { .. } => "E032",
            Self::OnExhaustedWithoutMaxAsks { .. } => "E033",
            Self::AskingKeyOnOptional { .. } => "E034",
            Self::UnknownFlow { .. } => "E035",
            Self::ConfirmOnClientTool { .. } => "E036",
            Self::LinkedFlowInvalid { .. } => "E037",
            Self::HandoffCycle { .. } => "E038",
            Self::HandoffUnknownSlot { .. } => "E039",
            Self::HandoffSlotType { .. } => "E040",
            Self::HandoffKeyWithoutFlow { .. } => "E041",
            Self::HandOffNotFlowTool { .. } => "E042",
            Self::MissingAsk { .. } => "W001",
            Self::UnusedSlot { .. } => "W002",
            Self::MissingToolDescription { .. } => "W003",
            Self::MissingParamDescription { .. } => "W004",
            Self::AskOnOptional { .. } => "W005",
            Self::EmptyAfterRule { .. } => "W006",
            Self::ScenarioUnreadable { .. } => "S001",
            Self::ScenarioFlow { .. } => "S002",
            Self::UnknownTool { .. } => "S003",
            Self::UnknownParam { .. } => "S004",
            Self::UnusedMock { .. } => "S005",
            Self::ScriptExhausted { .. } => "S006",
            Self::ScriptUnused { .. } => "S007",
            Self::ConflictingKeys { .. } => "S008",
            Self::MissingChoice { .. } => "S009",
            Self::ClientToolMocked { .. } => "S010",
            Self::NotClientTool { .. } => "S011",
            Self::Unmocked { .. } => "S012",
            Self::SubmitMismatch { .. } => "S013",
            Self::TurnRefused { .. } => "S014",
            Self::ExpectationFailed { .. } => "S015",
            Self::ModelUnavailable { .. } => "S016",
        }
    }

    /// Whether this is an error or a warning (read off the code).
    #[must_use]
    pub fn severity(&self) -> Severity {
        if self.code().starts_with('W') {
            Severity::Warning
        } else {
            Severity::Error
        }
    }
}

/// One test per variant, pinning its code, severity and exact message (just does this for
/// its compile errors): changing a message is a deliberate act, visible in review.
#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! message {
        ($name:ident, $kind:expr, $code:literal, $text:literal) => {
            #[test]
            fn $name() {
                let kind = $kind;
                assert_eq!(kind.code(), $code);
                assert_eq!(kind.to_string(), $text);
                let expected = if $code.starts_with('W') {
                    Severity::Warning
                } else {
                    Severity::Error
                };
                assert_eq!(kind.severity(), expected);
            }
        };
    }

    fn s(text: &str) -> String {
        text.to_owned()
    }

    message!(
        unreadable,
        DiagnosticKind::Unreadable {
            reason: s("no such file")
        },
        "E001",
        "cannot read the flow file: no such file"
    );
    message!(
        toml_syntax,
        DiagnosticKind::TomlSyntax {
            message: s("expected `=`")
        },
        "E002",
        "invalid TOML: expected `=`"
    );
    message!(
        duplicate_key,
        DiagnosticKind::DuplicateKey {
            key: s("tools.plan")
        },
        "E003",
        "`tools.plan` is defined more than once"
    );
    message!(
        unknown_key,
        DiagnosticKind::UnknownKey {
            key: s("minimun"),
            table: s("[tools.plan.params.goal]")
        },
        "E004",
        "unknown key `minimun` in [tools.plan.params.goal]"
    );
    message!(
        wrong_type,
        DiagnosticKind::WrongType {
            key: s("limits.max_steps"),
            expected: s("an integer"),
            found: s("a string")
        },
        "E005",
        "`limits.max_steps` must be an integer, found a string"
    );
    message!(
        missing_key,
        DiagnosticKind::MissingKey {
            key: s("model"),
            table: s("[assistant]")
        },
        "E006",
        "missing key `model` in [assistant]"
    );
    message!(
        invalid_value,
        DiagnosticKind::InvalidValue {
            key: s("assistant.temperature"),
            reason: s("3 is greater than the maximum of 2.0")
        },
        "E007",
        "invalid value for `assistant.temperature`: 3 is greater than the maximum of 2.0"
    );
    message!(
        no_executor,
        DiagnosticKind::NoExecutor { tool: s("plan") },
        "E008",
        "tool `plan` has no executor"
    );
    message!(
        multiple_executors,
        DiagnosticKind::MultipleExecutors {
            tool: s("plan"),
            found: s("`builtin` and `client`")
        },
        "E009",
        "tool `plan` has more than one executor: `builtin` and `client`"
    );
    message!(
        invalid_schema,
        DiagnosticKind::InvalidSchema {
            owner: s("slot `risk`"),
            reason: s("`minimum`: \"x\" is not of type \"number\"")
        },
        "E010",
        "invalid JSON Schema for slot `risk`: `minimum`: \"x\" is not of type \"number\""
    );
    message!(
        undeclared_slot,
        DiagnosticKind::UndeclaredSlot { slot: s("risk") },
        "E011",
        "slot `risk` is not declared"
    );
    message!(
        slot_type_conflict,
        DiagnosticKind::SlotTypeConflict {
            param: s("goal"),
            slot: s("name"),
            param_type: s("number"),
            slot_type: s("string")
        },
        "E012",
        "parameter `goal` has type number but slot `name` has type string"
    );
    message!(
        template_syntax,
        DiagnosticKind::TemplateSyntax {
            what: s("`inject`"),
            message: s("unexpected `}`")
        },
        "E013",
        "`inject` is not a valid template: unexpected `}`"
    );
    message!(
        expression_syntax,
        DiagnosticKind::ExpressionSyntax {
            what: s("`when`"),
            message: s("unexpected end of input")
        },
        "E014",
        "`when` is not a valid expression: unexpected end of input"
    );
    message!(
        undefined_name,
        DiagnosticKind::UndefinedName {
            name: s("args.gaol")
        },
        "E015",
        "`args.gaol` is not defined here"
    );
    message!(
        env_not_allowed,
        DiagnosticKind::EnvNotAllowed {
            var: s("TOKEN"),
            tool: s("lookup")
        },
        "E016",
        "environment variable `TOKEN` is not allow-listed for tool `lookup`"
    );
    message!(
        invalid_tool_name,
        DiagnosticKind::InvalidToolName { name: s("a.b") },
        "E017",
        "tool name `a.b` is not accepted by model providers"
    );
    message!(
        invalid_name,
        DiagnosticKind::InvalidName {
            kind: "slot",
            name: s("1x")
        },
        "E018",
        "slot name `1x` is not valid"
    );
    message!(
        schema_ref,
        DiagnosticKind::SchemaRef {
            path: s("money.json"),
            reason: s("no such file")
        },
        "E019",
        "cannot use schema file `money.json`: no such file"
    );
    message!(
        strict_unsupported,
        DiagnosticKind::StrictUnsupported {
            tool: s("plan"),
            reason: s("parameter `a` uses `minLength`, which strict mode does not support")
        },
        "E020",
        "tool `plan` asks for strict mode, but parameter `a` uses `minLength`, which strict mode does not support"
    );
    message!(
        scenario_unreadable,
        DiagnosticKind::ScenarioUnreadable {
            reason: s("no such file")
        },
        "S001",
        "cannot read the scenario file: no such file"
    );
    message!(
        scenario_flow,
        DiagnosticKind::ScenarioFlow {
            path: s("../../plan.toml"),
            reason: s("no such file")
        },
        "S002",
        "cannot use flow `../../plan.toml`: no such file"
    );
    message!(
        unknown_tool,
        DiagnosticKind::UnknownTool {
            tool: s("calculate"),
            flow: s("personal-finance")
        },
        "S003",
        "flow `personal-finance` has no tool `calculate`"
    );
    message!(
        unknown_param,
        DiagnosticKind::UnknownParam {
            param: s("goal"),
            owner: s("tool `plan`")
        },
        "S004",
        "`goal` is not a parameter of tool `plan`"
    );
    message!(
        unused_mock,
        DiagnosticKind::UnusedMock { tool: s("plan") },
        "S005",
        "the mock for `plan` is never used"
    );
    message!(
        script_exhausted,
        DiagnosticKind::ScriptExhausted {
            turn: 2,
            scripted: 1
        },
        "S006",
        "turn 2 runs out of model steps: the conversation needs more than the 1 scripted"
    );
    message!(
        script_unused,
        DiagnosticKind::ScriptUnused { turn: 1, unused: 2 },
        "S007",
        "turn 1 scripts 2 model step(s) the conversation never reaches"
    );
    message!(
        conflicting_keys,
        DiagnosticKind::ConflictingKeys {
            first: s("call"),
            second: s("calls")
        },
        "S008",
        "`call` and `calls` cannot be used together"
    );
    message!(
        missing_choice,
        DiagnosticKind::MissingChoice {
            what: s("this model step"),
            choices: s("`text`, `call` or `calls`")
        },
        "S009",
        "this model step needs `text`, `call` or `calls`"
    );
    message!(
        client_tool_mocked,
        DiagnosticKind::ClientToolMocked {
            tool: s("book_flight")
        },
        "S010",
        "`book_flight` is a client tool: its output comes from the app, not from a mock"
    );
    message!(
        not_client_tool,
        DiagnosticKind::NotClientTool { tool: s("plan") },
        "S011",
        "`plan` is not a client tool: the app cannot submit its output"
    );
    message!(
        unmocked,
        DiagnosticKind::Unmocked {
            tool: s("plan"),
            reason: s("no tool executor was given to run it")
        },
        "S012",
        "`plan` is called but has no mock: no tool executor was given to run it"
    );
    message!(
        submit_mismatch,
        DiagnosticKind::SubmitMismatch {
            turn: 3,
            reason: s("the run waits for the output of `book_flight`, but the turn submits none")
        },
        "S013",
        "turn 3: the run waits for the output of `book_flight`, but the turn submits none"
    );
    message!(
        turn_refused,
        DiagnosticKind::TurnRefused {
            turn: 2,
            message: s("the thread is busy")
        },
        "S014",
        "turn 2 cannot be played: the thread is busy"
    );
    message!(
        expectation_failed,
        DiagnosticKind::ExpectationFailed {
            expectation: s("run_status"),
            detail: s("the run ended `failed`")
        },
        "S015",
        "`run_status` expectation failed: the run ended `failed`"
    );
    message!(
        model_unavailable,
        DiagnosticKind::ModelUnavailable {
            reason: s("no recording at scenarios/recordings/plan.jsonl")
        },
        "S016",
        "cannot use the model: no recording at scenarios/recordings/plan.jsonl"
    );
    message!(
        missing_ask,
        DiagnosticKind::MissingAsk { param: s("goal") },
        "W001",
        "required parameter `goal` has no `ask`"
    );
    message!(
        unused_slot,
        DiagnosticKind::UnusedSlot { slot: s("risk") },
        "W002",
        "slot `risk` is never used"
    );
    message!(
        missing_tool_description,
        DiagnosticKind::MissingToolDescription { tool: s("plan") },
        "W003",
        "tool `plan` has no description"
    );
    message!(
        missing_param_description,
        DiagnosticKind::MissingParamDescription {
            tool: s("plan"),
            param: s("goal")
        },
        "W004",
        "parameter `goal` of tool `plan` has no description"
    );
    message!(
        ask_on_optional,
        DiagnosticKind::AskOnOptional { param: s("note") },
        "W005",
        "optional parameter `note` has an `ask` that is never used"
    );
    message!(
        empty_after_rule,
        DiagnosticKind::EmptyAfterRule { tool: s("plan") },
        "W006",
        "this `after` rule of tool `plan` does nothing"
    );
    message!(
        unknown_builtin,
        DiagnosticKind::UnknownBuiltin {
            name: s("finance.savings_timelin")
        },
        "E021",
        "unknown built-in `finance.savings_timelin`"
    );
    message!(
        builtin_mismatch,
        DiagnosticKind::BuiltinMismatch {
            tool: s("loan"),
            builtin: s("finance.loan_payment"),
            reason: s("parameter `years` is a number here, but the built-in takes an integer")
        },
        "E022",
        "tool `loan` does not match built-in `finance.loan_payment`: parameter `years` is a number here, but the built-in takes an integer"
    );
    message!(
        grounded_type,
        DiagnosticKind::GroundedType {
            param: s("include_history"),
            found: s("its type is `boolean`")
        },
        "E023",
        "parameter `include_history` is grounded, but its type is `boolean`: only numbers and strings can be"
    );
    message!(
        reserved_tool_name,
        DiagnosticKind::ReservedToolName {
            name: s("reply"),
            reason: s("with `tool_choice = \"required\"` Clarion adds its own `reply` tool")
        },
        "E024",
        "tool name `reply` is reserved: with `tool_choice = \"required\"` Clarion adds its own `reply` tool"
    );
    message!(
        unknown_followed_tool,
        DiagnosticKind::UnknownFollowedTool {
            tool: s("book_flight"),
            name: s("search_flight")
        },
        "E025",
        "tool `book_flight` follows `search_flight`, which is not another tool of this flow"
    );
    message!(
        confirm_on_client_tool,
        DiagnosticKind::ConfirmOnClientTool {
            tool: s("book_flight")
        },
        "E036",
        "tool `book_flight` asks for confirmation but is a client tool"
    );
    message!(
        unknown_mcp_server,
        DiagnosticKind::UnknownMcpServer {
            tool: s("now"),
            server: s("tme")
        },
        "E026",
        "tool `now` uses MCP server `tme`, which is not declared"
    );
    message!(
        mcp_tool_not_locked,
        DiagnosticKind::McpToolNotLocked {
            server: s("time"),
            remote: s("get_time")
        },
        "E027",
        "MCP server `time` has no tool `get_time` in the lock file"
    );
    message!(
        mcp_mismatch,
        DiagnosticKind::McpMismatch {
            tool: s("now"),
            remote: s("get_current_time"),
            reason: s("the MCP tool has no parameter `zone`")
        },
        "E028",
        "tool `now` does not match MCP tool `get_current_time`: the MCP tool has no parameter `zone`"
    );
    message!(
        mcp_lock_unusable,
        DiagnosticKind::McpLockUnusable {
            reason: s("there is no lock file flows/time.mcp.lock")
        },
        "E029",
        "the MCP lock file cannot be used: there is no lock file flows/time.mcp.lock"
    );
    message!(
        mcp_drift,
        DiagnosticKind::McpDrift {
            server: s("time"),
            reason: s("the input schema of tool `convert_time` changed")
        },
        "E030",
        "MCP server `time` no longer matches the lock file: the input schema of tool `convert_time` changed"
    );
    message!(
        invalid_cannot_fail,
        DiagnosticKind::InvalidCannotFail { param: s("note") },
        "E031",
        "parameter `note` has an `invalid` message, but its schema has no constraint a value could fail"
    );
    message!(
        max_asks_zero,
        DiagnosticKind::MaxAsksZero { param: s("years") },
        "E032",
        "`max_asks = 0` on parameter `years` would never let the user be asked"
    );
    message!(
        on_exhausted_without_max_asks,
        DiagnosticKind::OnExhaustedWithoutMaxAsks { param: s("years") },
        "E033",
        "parameter `years` has `on_exhausted` but no `max_asks`, so it never applies"
    );
    message!(
        asking_key_on_optional,
        DiagnosticKind::AskingKeyOnOptional {
            param: s("note"),
            key: s("invalid")
        },
        "E034",
        "optional parameter `note` has `invalid`, but optional parameters are never asked for"
    );
    message!(
        unknown_flow,
        DiagnosticKind::UnknownFlow {
            tool: s("trip"),
            flow: s("travel"),
            reason: s("there is no file `flows/travel.toml`")
        },
        "E035",
        "tool `trip` hands off to `travel`, but there is no file `flows/travel.toml`"
    );
    message!(
        linked_flow_invalid,
        DiagnosticKind::LinkedFlowInvalid {
            tool: s("trip"),
            flow: s("travel-booking"),
            errors: 2
        },
        "E037",
        "tool `trip` hands off to flow `travel-booking`, which has 2 error(s)"
    );
    message!(
        handoff_cycle,
        DiagnosticKind::HandoffCycle {
            tool: s("desk"),
            cycle: s("front-desk → travel-booking → front-desk")
        },
        "E038",
        "tool `desk` hands off in a cycle: front-desk → travel-booking → front-desk"
    );
    message!(
        handoff_unknown_slot,
        DiagnosticKind::HandoffUnknownSlot {
            tool: s("trip"),
            key: s("`with`"),
            slot: s("city"),
            flow: s("travel-booking")
        },
        "E039",
        "`with` of tool `trip` names slot `city`, which flow `travel-booking` does not declare"
    );
    message!(
        handoff_slot_type,
        DiagnosticKind::HandoffSlotType {
            tool: s("trip"),
            key: s("`returns`"),
            from: s("slot `booking_reference` of `travel-booking`"),
            from_type: s("string"),
            to: s("slot `booked`"),
            to_type: s("boolean")
        },
        "E040",
        "`returns` of tool `trip` fills slot `booked` (boolean) from slot `booking_reference` of `travel-booking` (string)"
    );
    message!(
        hand_off_not_flow_tool,
        DiagnosticKind::HandOffNotFlowTool {
            param: s("years"),
            tool: s("advisor"),
            reason: s("`advisor` runs as `builtin`, not `flow`")
        },
        "E042",
        "parameter `years` hands off through `advisor` when its asks run out, but `advisor` runs as `builtin`, not `flow`"
    );
    message!(
        handoff_key_without_flow,
        DiagnosticKind::HandoffKeyWithoutFlow {
            tool: s("plan"),
            key: s("returns")
        },
        "E041",
        "tool `plan` has `returns`, but no `flow` to hand off to"
    );
}
