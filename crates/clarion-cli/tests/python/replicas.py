"""The official `openai` Python SDK against two `clarion serve` replicas on one PostgreSQL.

Run by tests/serve_postgres.rs. Every request alternates between the replicas: a thread
made on one is run on the other, a question asked by one is answered through the other, a
client tool's run started on one gets its outputs, streamed, on the other. Environment:
CLARION_REPLICA_A and CLARION_REPLICA_B (http://127.0.0.1:PORT/v1). Prints `ok`.
"""

import os

from openai import AssistantEventHandler, OpenAI

ASSISTANT = "asst_replicas"
a = OpenAI(base_url=os.environ["CLARION_REPLICA_A"], api_key="sk-open", max_retries=0, timeout=30)
b = OpenAI(base_url=os.environ["CLARION_REPLICA_B"], api_key="sk-open", max_retries=0, timeout=30)


class Recorder(AssistantEventHandler):
    def __init__(self):
        super().__init__()
        self.events = []
        self.text = ""

    def on_event(self, event):
        self.events.append(event.event)

    def on_text_delta(self, delta, snapshot):
        self.text += delta.value or ""


def texts(client, thread_id):
    page = client.beta.threads.messages.list(thread_id=thread_id, order="asc")
    return [(m.role, m.content[0].text.value) for m in page.data]


# A question asked on B, answered through A, the call completed on B.
thread = a.beta.threads.create(
    messages=[{"role": "user", "content": "How long to save $12,000 at $1,000 a month?"}]
)
run = b.beta.threads.runs.create_and_poll(
    thread_id=thread.id, assistant_id=ASSISTANT, poll_interval_ms=20
)
assert run.status == "completed", run
asked = texts(a, thread.id)
assert asked[-1] == ("assistant", "What is your net monthly income?"), asked

b.beta.threads.messages.create(thread_id=thread.id, role="user", content="I earn $4,000.")
run = a.beta.threads.runs.create_and_poll(
    thread_id=thread.id, assistant_id=ASSISTANT, poll_interval_ms=20
)
assert run.status == "completed", run
assert a.beta.threads.runs.retrieve(thread_id=thread.id, run_id=run.id).status == "completed"
assert texts(b, thread.id)[-1] == ("assistant", "It takes 12 months."), texts(b, thread.id)

# A client tool: the run waits on A; its outputs are submitted, streamed, on B.
a.beta.threads.messages.create(thread_id=thread.id, role="user", content="Remind me monthly.")
run = a.beta.threads.runs.create_and_poll(
    thread_id=thread.id, assistant_id=ASSISTANT, poll_interval_ms=20
)
assert run.status == "requires_action", run
call = run.required_action.submit_tool_outputs.tool_calls[0]
assert call.function.name == "set_reminder", call
waiting = b.beta.threads.runs.retrieve(thread_id=thread.id, run_id=run.id)
assert waiting.status == "requires_action", waiting

recorder = Recorder()
with b.beta.threads.runs.submit_tool_outputs_stream(
    thread_id=thread.id,
    run_id=run.id,
    tool_outputs=[{"tool_call_id": call.id, "output": '{"set": true}'}],
    event_handler=recorder,
) as stream:
    stream.until_done()
assert "thread.message.delta" in recorder.events, recorder.events
assert recorder.events[-1] == "thread.run.completed", recorder.events
assert recorder.text == "Your monthly reminder is set.", recorder.text
assert a.beta.threads.runs.retrieve(thread_id=thread.id, run_id=run.id).status == "completed"

# A run created and streamed on B, its result read on A.
b.beta.threads.messages.create(thread_id=thread.id, role="user", content="Thanks!")
recorder = Recorder()
with b.beta.threads.runs.stream(
    thread_id=thread.id, assistant_id=ASSISTANT, event_handler=recorder
) as stream:
    stream.until_done()
assert recorder.events[-1] == "thread.run.completed", recorder.events
assert texts(a, thread.id)[-1] == ("assistant", recorder.text), texts(a, thread.id)
assert [r for r, _ in texts(a, thread.id)] == [
    "user", "assistant", "user", "assistant", "user", "assistant", "user", "assistant",
], texts(a, thread.id)
print("ok")
