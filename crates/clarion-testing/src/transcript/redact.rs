//! Secrets out of transcripts: the values of the environment variables a flow's HTTP and
//! command tools may read are replaced by `[redacted: NAME]` (the engine's
//! [`Redactor`], with names so a reader sees which secret was there).

pub use clarion_engine::Redactor;
use clarion_flow::{Executor, Flow};

/// Values too short to be secrets would mangle ordinary text if replaced.
const MIN_SECRET_LEN: usize = 4;

/// A redactor for the variables the tools of `flow` (and of the flows it hands off to)
/// allow-list, with their values from this
/// process's environment.
#[must_use]
pub fn for_flow(flow: &Flow) -> Redactor {
    let mut redactor = Redactor::new();
    for tool in flow.reachable().into_iter().flat_map(|f| f.tools.values()) {
        let names = match &tool.executor {
            Executor::Http(http) => http.env.as_slice(),
            Executor::Command(command) => command.env.as_slice(),
            Executor::Mcp(mcp) => mcp.spec.env.as_slice(),
            Executor::Builtin(_) | Executor::Flow(_) | Executor::Client => &[],
        };
        for name in names {
            if let Ok(value) = std::env::var(name)
                && value.chars().count() >= MIN_SECRET_LEN
            {
                redactor.add_named(name, &value);
            }
        }
    }
    redactor
}
