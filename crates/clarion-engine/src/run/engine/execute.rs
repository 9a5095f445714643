//! Running one server-side tool call under its timeout.

use super::*;
use crate::codes::ToolErrorKind;
use clarion_flow::model::format_duration;

impl Engine {
    pub(super) async fn execute(
        &self,
        tool: &Tool,
        call: &ToolCall,
        args: &Map<String, Value>,
        events: &dyn EventSink,
    ) -> Result<Value, ToolError> {
        events.emit(&Event::ToolStarted {
            call_id: call.id.clone(),
            name: call.name.clone(),
            arguments: Value::Object(args.clone()),
        });
        let timeout = tool.timeout(&self.flow.limits);
        let request = ToolRequest {
            flow: &self.flow,
            tool,
            call_id: &call.id,
            arguments: args,
        };
        // Argument values can be personal data: spans carry names only.
        let span = crate::observe::tool_span(tool, &call.id);
        let execution =
            tokio::time::timeout(timeout, self.tools.execute(request)).instrument(span.clone());
        let started = std::time::Instant::now();
        let result = match execution.await {
            Ok(result) => result,
            Err(_) => Err(ToolError::new(
                ToolErrorKind::Timeout,
                format!(
                    "`{}` did not finish within {}",
                    tool.name,
                    format_duration(timeout)
                ),
            )),
        };
        let outcome = result.as_ref().map_or_else(|e| e.kind.as_str(), |_| "ok");
        crate::observe::tool_called(&self.flow, tool, &span, outcome, started.elapsed());
        if let Err(error) = &result {
            // Failures are part of the loop (the model reads them and goes on), so info;
            // the message can quote arguments or a response, so only the content target.
            tracing::info!(call_id = %call.id, tool = %tool.name, executor = tool.executor.kind(), code = error.kind.as_str(), "tool failed ({})", error.kind.as_str());
            tracing::info!(target: crate::observe::CONTENT_TARGET, call_id = %call.id, tool = %tool.name, "tool failed: {}", error.message);
        }
        result
    }
}
