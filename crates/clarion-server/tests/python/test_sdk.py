"""The official `openai` Python SDK, unmodified, against `clarion serve`.

Run by tests/sdk.rs, one scenario per process, against a server on loopback whose model
is scripted for that scenario. Environment: OPENAI_BASE_URL (http://127.0.0.1:PORT/v1),
OPENAI_API_KEY, and for the `keys` scenario CLARION_OTHER_KEY. Prints `ok SCENARIO`.
"""

import os
import sys

import openai
from openai import AssistantEventHandler, OpenAI

ASSISTANT = "asst_shop"
client = OpenAI(max_retries=0, timeout=20)


def loop():
    """create thread -> add message -> create run -> poll -> requires_action -> submit -> completed"""
    thread = client.beta.threads.create(metadata={"user": "u1"})
    assert thread.id.startswith("thread_"), thread
    assert thread.metadata == {"user": "u1"}, thread.metadata
    message = client.beta.threads.messages.create(
        thread_id=thread.id, role="user", content="Save 1200 and pay my $42 bill"
    )
    assert message.id.startswith("msg_") and message.role == "user"
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=ASSISTANT, poll_interval_ms=20
    )
    assert run.status == "requires_action", run
    calls = run.required_action.submit_tool_outputs.tool_calls
    # The server-side `savings` tool ran inside; only the client tool surfaces.
    assert [c.function.name for c in calls] == ["pay"], calls
    assert calls[0].id.startswith("call_")
    assert '"amount"' in calls[0].function.arguments

    try:
        client.beta.threads.messages.create(thread_id=thread.id, role="user", content="hello?")
        raise AssertionError("a message was accepted while a run is active")
    except openai.BadRequestError as error:
        assert error.status_code == 400
        assert "while a run" in error.message and run.id in error.message, error.message

    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=thread.id,
        run_id=run.id,
        tool_outputs=[{"tool_call_id": calls[0].id, "output": '{"paid": true}'}],
        poll_interval_ms=20,
    )
    assert run.status == "completed", run
    assert run.completed_at is not None and run.usage is not None

    messages = client.beta.threads.messages.list(thread_id=thread.id)
    assert [m.role for m in messages.data] == ["assistant", "user"], messages
    reply = messages.data[0]
    assert reply.content[0].text.value == "Paid $42. Your goal takes 12 months.", reply
    assert reply.run_id == run.id and reply.assistant_id == ASSISTANT

    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc")
    assert [s.type for s in steps.data] == ["tool_calls", "tool_calls", "message_creation"]
    savings = steps.data[0].step_details.tool_calls[0]
    assert savings.function.name == "savings" and "months" in savings.function.output

    runs = client.beta.threads.runs.list(thread_id=thread.id)
    assert [r.id for r in runs.data] == [run.id]
    assert client.beta.threads.runs.retrieve(thread_id=thread.id, run_id=run.id).status == "completed"

    thread = client.beta.threads.update(thread_id=thread.id, metadata={"plan": "gold"})
    assert thread.metadata == {"user": "u1", "plan": "gold"}, thread.metadata
    deleted = client.beta.threads.delete(thread_id=thread.id)
    assert deleted.deleted and deleted.id == thread.id
    try:
        client.beta.threads.retrieve(thread_id=thread.id)
        raise AssertionError("a deleted thread was found")
    except openai.NotFoundError as error:
        assert error.status_code == 404


def question():
    """A missing parameter asks the flow's question; the next user message completes the call."""
    run = client.beta.threads.create_and_run_poll(
        assistant_id=ASSISTANT,
        thread={"messages": [{"role": "user", "content": "How long to save $12,000?"}]},
        poll_interval_ms=20,
    )
    assert run.status == "completed", run
    messages = client.beta.threads.messages.list(thread_id=run.thread_id, limit=1)
    asked = messages.data[0]
    assert asked.role == "assistant", asked
    assert "net monthly income" in asked.content[0].text.value, asked.content
    assert asked.metadata["clarion_kind"] == "question", asked.metadata
    assert messages.has_more
    thread = client.beta.threads.retrieve(thread_id=run.thread_id)
    assert thread.clarion["slots"] == {"goal_amount": 12000}, thread.clarion

    client.beta.threads.messages.create(
        thread_id=run.thread_id, role="user", content="I earn 5000 and save 1000 a month"
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=run.thread_id, assistant_id=ASSISTANT, poll_interval_ms=20
    )
    assert run.status == "completed", run
    texts = [
        m.content[0].text.value
        for m in client.beta.threads.messages.list(thread_id=run.thread_id, order="asc")
    ]
    assert len(texts) == 4 and texts[-1] == "About a year.", texts
    steps = client.beta.threads.runs.steps.list(thread_id=run.thread_id, run_id=run.id)
    call = steps.data[-1].step_details.tool_calls[0]
    assert call.function.name == "savings" and '"months"' in call.function.output, call


class Recorder(AssistantEventHandler):
    def __init__(self):
        super().__init__()
        self.events = []
        self.text = ""

    def on_event(self, event):
        self.events.append(event.event)

    def on_text_delta(self, delta, snapshot):
        self.text += delta.value


def stream():
    """client.beta.threads.runs.stream with an event handler, through requires_action."""
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "Save 1200 and pay my $42 bill"}]
    )
    first = Recorder()
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=ASSISTANT, event_handler=first
    ) as s:
        s.until_done()
    assert first.events[0] == "thread.run.created", first.events
    assert first.events[-1] == "thread.run.requires_action", first.events
    run = first.current_run
    assert run.status == "requires_action", run
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    assert call.function.name == "pay"

    second = Recorder()
    with client.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=thread.id,
        run_id=run.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "paid"}],
        event_handler=second,
    ) as s:
        s.until_done()
    assert "thread.message.delta" in second.events, second.events
    assert second.events[-1] == "thread.run.completed", second.events
    assert second.text == "Paid $42. Your goal takes 12 months.", second.text
    final = second.get_final_messages()
    assert final[0].content[0].text.value == second.text, final


def keys():
    """Each key sees only its own threads; a wrong key is refused."""
    mine = client.beta.threads.create()
    other = OpenAI(api_key=os.environ["CLARION_OTHER_KEY"], max_retries=0)
    try:
        other.beta.threads.retrieve(thread_id=mine.id)
        raise AssertionError("key B read key A's thread")
    except openai.NotFoundError as error:
        assert error.status_code == 404
    try:
        OpenAI(api_key="sk-wrong", max_retries=0).beta.threads.retrieve(thread_id=mine.id)
        raise AssertionError("a wrong key was accepted")
    except openai.AuthenticationError as error:
        assert error.status_code == 401
    assert client.beta.threads.retrieve(thread_id=mine.id).id == mine.id


def more():
    """Assistants, auto-pagination, retrieval by id, message metadata, and cancelling a
    waiting run."""
    assistants = client.beta.assistants.list()
    assert [a.id for a in assistants.data] == [ASSISTANT], assistants
    assistant = client.beta.assistants.retrieve(ASSISTANT)
    assert assistant.name == "shop" and {t.function.name for t in assistant.tools} == {"savings", "pay"}

    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": f"note {i}"} for i in range(5)]
    )
    # The SDK pages on its own with `after` while `has_more`.
    texts = [
        m.content[0].text.value
        for m in client.beta.threads.messages.list(thread_id=thread.id, limit=2, order="asc")
    ]
    assert texts == [f"note {i}" for i in range(5)], texts
    page = client.beta.threads.messages.list(thread_id=thread.id, limit=2)
    assert page.has_more and len(page.data) == 2 and page.data[0].content[0].text.value == "note 4"
    first = client.beta.threads.messages.retrieve(thread_id=thread.id, message_id=page.data[1].id)
    assert first.content[0].text.value == "note 3"
    # Message metadata is stored: set on create, merged by update, read back.
    tagged = client.beta.threads.messages.create(
        thread_id=thread.id, role="user", content="note 5", metadata={"source": "sdk"}
    )
    assert tagged.metadata == {"source": "sdk"}, tagged
    updated = client.beta.threads.messages.update(
        message_id=tagged.id, thread_id=thread.id, metadata={"reviewed": "yes"}
    )
    assert updated.metadata == {"source": "sdk", "reviewed": "yes"}, updated
    again = client.beta.threads.messages.retrieve(thread_id=thread.id, message_id=tagged.id)
    assert again.metadata == {"source": "sdk", "reviewed": "yes"}, again

    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=ASSISTANT, poll_interval_ms=20
    )
    assert run.status == "requires_action", run
    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc")
    waiting = client.beta.threads.runs.steps.retrieve(
        thread_id=thread.id, run_id=run.id, step_id=steps.data[-1].id
    )
    assert waiting.status == "in_progress" and waiting.step_details.tool_calls[0].function.output is None
    cancelled = client.beta.threads.runs.cancel(thread_id=thread.id, run_id=run.id)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at is not None, cancelled
    try:
        client.beta.threads.runs.cancel(thread_id=thread.id, run_id=run.id)
        raise AssertionError("a cancelled run was cancelled again")
    except openai.BadRequestError as error:
        assert "cancelled" in error.message, error.message
    message = client.beta.threads.messages.create(thread_id=thread.id, role="user", content="ok")
    assert message.role == "user"


SCENARIOS = {"loop": loop, "question": question, "stream": stream, "keys": keys, "more": more}

if __name__ == "__main__":
    name = sys.argv[1]
    SCENARIOS[name]()
    print(f"ok {name} (openai {openai.__version__})")
