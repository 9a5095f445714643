// Clarion playground: a living example of `clarion serve`'s API.
//
// The conversation uses the Assistants API under /v1 exactly as an application would
// (threads, messages, streamed runs, submit_tool_outputs); the inspector reads the
// engine's events of each run from the read-only extension
// /v1/threads/{thread}/runs/{run}/events; /play/api/* is the playground's own (flows,
// stored threads, captured model requests, save as scenario). No framework, no build.
"use strict";

const state = {
  flows: [],          // from /play/api/flows
  version: 0,
  assistant: null,    // the selected flow's assistant id
  thread: null,       // the current thread id
  runs: [],           // [{id, events: [], run: object|null, startedAt}]
  requests: [],       // captured model requests of the thread
  busy: false,
  latencies: [],      // ms between an engine event and the inspector showing it
};
window.clarionPlayground = state;

const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const error = await response.json();
      if (error && error.error && error.error.message) message = error.error.message;
    } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

const getJson = async (path) => (await api("GET", path)).json();

// Server-sent events from a fetch response: yields {event, data}.
async function* sse(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: data.join("\n") };
    }
  }
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const json = (value) => JSON.stringify(value);
const args = (object) => Object.entries(object || {}).map(([k, v]) => `${k}: ${json(v)}`).join(", ");
function parsed(text) {
  try { return JSON.parse(text); } catch (_) { return text; }
}

// ---- flows and reload-on-edit ----

async function loadFlows() {
  const listing = await getJson("/play/api/flows");
  const changed = listing.version !== state.version;
  const first = state.version === 0;
  state.version = listing.version;
  state.flows = listing.flows;
  if (!changed) return;
  const select = $("flow");
  const keep = state.assistant;
  select.replaceChildren(...state.flows.filter((f) => f.assistant_id).map((f) =>
    el("option", { value: f.assistant_id }, `${f.name} (${f.file})`)));
  if (keep && state.flows.some((f) => f.assistant_id === keep)) select.value = keep;
  state.assistant = select.value || null;
  if (!first) $("reload").textContent = `Flow files reloaded (version ${state.version}) at ${new Date().toLocaleTimeString()}.`;
  showFlow();
}

function currentFlow() {
  return state.flows.find((f) => f.assistant_id === state.assistant) || null;
}

function showFlow() {
  const flow = currentFlow();
  const broken = state.flows.filter((f) => f.diagnostics);
  $("diagnostics").hidden = broken.length === 0;
  $("diagnostics-text").textContent = broken.map((f) => f.diagnostics).join("\n\n");
  renderDiagram();
  document.title = flow ? `${flow.name} · Clarion playground` : "Clarion playground";
}

function renderDiagram() {
  const flow = currentFlow();
  const pre = $("diagram");
  pre.replaceChildren();
  if (!flow) return;
  // The path taken: every tool this conversation called is marked in the source.
  const called = new Set();
  for (const run of state.runs) for (const e of run.events) if (e.event === "tool_called") called.add(e.name);
  for (const line of flow.mermaid.split("\n")) {
    const hit = [...called].some((name) => line.includes(name));
    pre.append(hit ? el("mark", {}, line) : line, "\n");
  }
}

// ---- threads ----

async function loadThreads() {
  const listing = await getJson("/play/api/threads");
  const select = $("threads");
  const options = listing.data.map((t) => el("option", { value: t.id },
    `${t.flow} · ${new Date(t.last_activity * 1000).toLocaleString()} · ${t.message_count} messages`));
  select.replaceChildren(el("option", { value: "" }, "a stored conversation…"), ...options);
}

function newThread() {
  state.thread = null;
  state.runs = [];
  state.requests = [];
  state.requestPicked = false;
  $("thread-id").textContent = "";
  $("messages").replaceChildren();
  $("save-status").textContent = "";
  $("replay-diff").hidden = true;
  $("client-call").hidden = true;
  renderInspector(null);
  $("message").focus();
}

async function reopen(threadId) {
  if (!threadId) return;
  const thread = await getJson(`/v1/threads/${threadId}`);
  if (thread.clarion.assistant_id) {
    state.assistant = thread.clarion.assistant_id;
    $("flow").value = state.assistant;
    showFlow();
  }
  state.thread = threadId;
  $("thread-id").textContent = threadId;
  const runs = await getJson(`/v1/threads/${threadId}/runs?order=asc&limit=100`);
  state.runs = runs.data.map((run) => ({ id: run.id, events: [], run, startedAt: run.created_at * 1000 }));
  await Promise.all(state.runs.map((run) => follow(run)));
  await refresh();
}

// ---- the conversation ----

async function ensureThread() {
  if (state.thread) return state.thread;
  const thread = await (await api("POST", "/v1/threads", {})).json();
  state.thread = thread.id;
  $("thread-id").textContent = thread.id;
  return thread.id;
}

async function send(text) {
  if (!state.assistant) throw new Error("no flow is loaded");
  const threadId = await ensureThread();
  appendMessage("user", text, false);
  await api("POST", `/v1/threads/${threadId}/messages`, { role: "user", content: text });
  const response = await api("POST", `/v1/threads/${threadId}/runs`, { assistant_id: state.assistant, stream: true });
  await consume(response);
}

async function submitOutputs(runId, outputs) {
  const response = await api("POST", `/v1/threads/${state.thread}/runs/${runId}/submit_tool_outputs`,
    { tool_outputs: outputs, stream: true });
  await consume(response);
}

// Reads a streamed run: its text as it arrives, and (through the events extension) the
// engine's events for the inspector.
async function consume(response) {
  let streaming = null;
  let run = null;
  const following = [];
  for await (const { event, data } of sse(response)) {
    if (data === "[DONE]") break;
    const object = parsed(data);
    if (event === "thread.run.created" || event === "thread.run.queued") {
      if (!run) {
        run = state.runs.find((r) => r.id === object.id);
        if (run) {
          // Outputs submitted: the run goes on; its events are read again from the start.
          run.events = [];
        } else {
          run = { id: object.id, events: [], run: object, startedAt: Date.now() };
          state.runs.push(run);
        }
        following.push(follow(run));
      }
    } else if (event.startsWith("thread.run.")) {
      if (run) run.run = object;
      renderRun();
    } else if (event === "thread.message.delta") {
      if (!streaming) streaming = appendMessage("assistant", "", false, true);
      for (const part of object.delta.content || []) {
        if (part.text) streaming.querySelector(".text").textContent += part.text.value;
      }
    }
  }
  await Promise.all(following);
  await refresh();
}

// Follows one run's engine events until its task ends.
async function follow(run) {
  try {
    const response = await api("GET", `/v1/threads/${state.thread}/runs/${run.id}/events`);
    for await (const { event, data } of sse(response)) {
      if (event !== "clarion.event") break;
      const value = JSON.parse(data);
      run.events.push(value);
      if (value.event === "text_delta") continue;
      renderInspector(run);
      if (value.at_ms) state.latencies.push(Date.now() - value.at_ms);
    }
  } catch (error) {
    run.error = String(error.message || error);
  }
  if (run.events.length === 0) await stepsOf(run);
}

// A run this playground did not drive (an earlier session's) has no events kept: its
// steps from the API stand in.
async function stepsOf(run) {
  try {
    const steps = await getJson(`/v1/threads/${state.thread}/runs/${run.id}/steps?order=asc&limit=100`);
    for (const step of steps.data) {
      for (const call of (step.step_details.tool_calls || [])) {
        run.events.push({ event: "tool_called", name: call.function.name, arguments: call.function.arguments, from_steps: true });
        if (call.function.output !== null && call.function.output !== undefined) {
          run.events.push({ event: "tool_finished", name: call.function.name, status: "output", content: call.function.output, from_steps: true });
        }
      }
    }
  } catch (_) { /* the run's steps are gone with it */ }
}

async function refresh() {
  if (!state.thread) return;
  const [messages, thread, requests] = await Promise.all([
    getJson(`/v1/threads/${state.thread}/messages?order=asc&limit=100`),
    getJson(`/v1/threads/${state.thread}`),
    getJson(`/play/api/threads/${state.thread}/requests`),
  ]);
  state.threadObject = thread;
  state.requests = requests.data;
  for (const run of state.runs) {
    if (!run.run || !isResting(run.run.status)) {
      try { run.run = await getJson(`/v1/threads/${state.thread}/runs/${run.id}`); } catch (_) { /* gone */ }
    }
  }
  const list = $("messages");
  list.replaceChildren();
  for (const message of messages.data) {
    const text = message.content.map((c) => (c.text ? c.text.value : "")).join("");
    const kind = message.metadata && message.metadata.clarion_kind;
    const question = kind === "question" || kind === "confirmation";
    appendMessage(message.role, text, question, false, message.metadata);
  }
  const last = state.runs[state.runs.length - 1];
  const waiting = last && last.run && last.run.status === "requires_action" ? last.run : null;
  showClientCall(waiting);
  renderInspector(last || null);
  loadThreads().catch(() => {});
}

const isResting = (status) => ["completed", "failed", "cancelled", "expired", "incomplete", "requires_action"].includes(status);

function appendMessage(role, text, question, streaming, metadata) {
  const confirming = metadata && metadata.clarion_kind === "confirmation";
  const who = confirming
    ? `Confirmation from the flow (${metadata.clarion_tool} waits for your yes, no or change)`
    : question
    ? `Question from the flow (asks for ${(metadata && metadata.clarion_params || "").split(",").join(", ")})`
    : role === "user" ? "You" : "Assistant";
  const item = el("li", { class: [role, question ? "question" : "", streaming ? "streaming" : ""].join(" ").trim() },
    el("span", { class: "who" }, who), el("span", { class: "text" }, text));
  $("messages").append(item);
  item.scrollIntoView({ block: "nearest" });
  return item;
}

function showClientCall(run) {
  const form = $("client-call");
  if (!run || !run.required_action) {
    form.hidden = true;
    return;
  }
  const calls = run.required_action.submit_tool_outputs.tool_calls;
  $("client-call-text").textContent = calls.map((c) => `${c.function.name}(${c.function.arguments})`).join("; ");
  form.hidden = false;
  form.dataset.run = run.id;
  form.dataset.calls = JSON.stringify(calls.map((c) => c.id));
}

// ---- the inspector ----

function renderInspector(run) {
  renderRun(run);
  renderSteps();
  renderSlots();
  renderContext();
  renderRequests();
  renderDiagram();
  const pending = state.threadObject && state.threadObject.clarion && state.threadObject.clarion.pending;
  let waiting = null;
  for (const r of state.runs) {
    for (const e of r.events) {
      if (e.event === "question_asked" || e.event === "confirmation_asked") waiting = e;
      if (e.event === "tool_started" || e.event === "pending_abandoned") waiting = null;
    }
  }
  const last = state.runs[state.runs.length - 1];
  const required = last && last.run && last.run.status === "requires_action" && last.run.required_action;
  if (required) {
    const calls = required.submit_tool_outputs.tool_calls.map((c) => c.function.name).join(", ");
    $("pending").textContent = `${calls} waits for the app (client tool: requires_action)`;
  } else if (pending) {
    $("pending").textContent = pending.confirm
      ? `${pending.tool} waits for confirmation: "${pending.confirm}" (${args(pending.known)})`
      : `${pending.tool} waits for ${pending.missing.join(", ")}`;
  } else if (waiting) {
    $("pending").textContent = `${waiting.tool} waits for ${waiting.params.join(", ")}`;
  } else {
    $("pending").textContent = "None.";
  }
}

function renderRun(run) {
  run = run || state.runs[state.runs.length - 1];
  const dl = $("run-summary");
  dl.replaceChildren();
  if (!run) return;
  const object = run.run || {};
  const statuses = run.events.filter((e) => e.event === "status");
  const status = statuses.length ? statuses[statuses.length - 1].status : object.status;
  const first = run.events.length ? run.events[0].at_ms : null;
  const last = run.events.length ? run.events[run.events.length - 1].at_ms : null;
  const usage = object.usage;
  const rows = [
    ["Run", run.id],
    ["Status", status || "…"],
    ["Model requests", run.events.filter((e) => e.event === "model_called").length],
    ["Duration", first && last ? `${last - first} ms` : "—"],
    ["Tokens", usage ? `${usage.prompt_tokens} in, ${usage.completion_tokens} out, ${usage.total_tokens} total` : "—"],
    ["Runs in thread", state.runs.length],
  ];
  for (const [key, value] of rows) dl.append(el("dt", {}, key), el("dd", { "data-key": key }, value));
}

function stepLine(e) {
  switch (e.event) {
    case "status": return [`run ${e.status}`, ""];
    case "model_called": return ["model asked", ""];
    case "tool_called": return ["→ call", `${e.name}(${typeof e.arguments === "string" ? e.arguments : json(e.arguments)})`];
    case "not_stated": return ["dropped", `${e.tool}: ${e.params.join(", ")} not stated by the user (grounding)`, "dropped"];
    case "filled_from_slots": return ["filled", `${e.tool}: ${e.params.join(", ")} from slots`];
    case "tool_started": return ["▸ runs", `${e.name}(${args(e.arguments)})`];
    case "tool_finished": return ["← result", `${e.name}: ${e.status} ${e.content}`];
    case "question_asked": return ["? question", `${e.tool} asks for ${e.params.join(", ")}: "${e.text}" (call pending)`, "question"];
    case "confirmation_asked": return ["? confirm", `${e.tool}(${args(e.args)}) waits: "${e.text}"`, "question"];
    case "confirmation_answered": return ["✓ answer", `${e.tool}: the answer reads as ${e.decision.decision}${e.decision.changes ? " " + json(e.decision.changes) : ""}`];
    case "value_rejected": return ["✗ rejected", `${e.tool}: ${e.param} = ${json(e.value)} fails ${e.keyword}${e.limit === undefined ? "" : " " + json(e.limit)} (asked again)`, "dropped"];
    case "asks_exhausted": return ["✗ given up", `${e.tool}: ${e.params.join(", ")} asked ${e.asked} times (${json(e.outcome)})`];
    case "context_injected": return ["+ context", `${e.tool}: ${e.text}`];
    case "slot_set": return ["= slot", `${e.name} ← ${json(e.value)}`];
    case "pending_abandoned": return ["✗ abandoned", `the pending ${e.tool} call`];
    case "rule_skipped": return ["! rule skipped", `${e.tool}: ${e.reason}`];
    default: return null;
  }
}

function renderSteps() {
  const list = $("steps");
  list.replaceChildren();
  state.runs.forEach((run, index) => {
    for (const e of run.events) {
      const line = stepLine(e);
      if (!line) continue;
      const [kind, text, cls] = line;
      list.append(el("li", { class: cls || "" }, el("span", { class: "kind" }, kind), " ", text,
        e.at_ms && run.events[0].at_ms ? el("span", { class: "muted" }, ` +${e.at_ms - run.events[0].at_ms} ms (run ${index + 1})`) : null));
    }
  });
}

function renderSlots() {
  // Where each value came from: an argument of a call, or a rule after a tool answered.
  const sources = new Map();
  for (const run of state.runs) {
    let lastCall = null;
    let lastFinished = null;
    for (const e of run.events) {
      if (e.event === "tool_called") { lastCall = e.name; lastFinished = null; }
      if (e.event === "tool_finished") lastFinished = e.name;
      if (e.event === "slot_set") {
        sources.set(e.name, lastFinished ? `rule of ${lastFinished}` : lastCall ? `argument of ${lastCall}` : "set");
      }
    }
  }
  const slots = (state.threadObject && state.threadObject.clarion && state.threadObject.clarion.slots) || {};
  const live = {};
  for (const run of state.runs) for (const e of run.events) if (e.event === "slot_set") live[e.name] = e.value;
  const merged = { ...slots, ...live };
  const body = $("slots").querySelector("tbody");
  body.replaceChildren(...Object.entries(merged).map(([name, value]) =>
    el("tr", {}, el("td", {}, name), el("td", {}, json(value)), el("td", {}, sources.get(name) || "stored"))));
}

function renderContext() {
  const list = $("context");
  const items = [];
  for (const run of state.runs) for (const e of run.events) if (e.event === "context_injected") items.push(el("li", {}, `${e.tool}: ${e.text}`));
  list.replaceChildren(...items);
}

function renderRequests() {
  const select = $("request-pick");
  const keep = select.value;
  select.replaceChildren(...state.requests.map((r, i) =>
    el("option", { value: String(i) }, `#${i + 1} at ${new Date(r.at_ms).toLocaleTimeString()}`)));
  if (state.requests.length) {
    // The latest request, unless the user picked another one to look at.
    const picked = state.requestPicked && keep && Number(keep) < state.requests.length;
    select.value = picked ? keep : String(state.requests.length - 1);
  }
  showRequest();
}

function showRequest() {
  const request = state.requests[Number($("request-pick").value)];
  $("request").textContent = request ? `POST ${request.url}\n${JSON.stringify(request.body, null, 2)}` : "";
  const latest = state.requests[state.requests.length - 1];
  $("instructions").textContent = latest ? latest.instructions : "";
}

// ---- save as scenario ----

async function saveScenario(name) {
  const status = $("save-status");
  status.classList.remove("error");
  if (!state.thread) throw new Error("start a conversation first");
  status.textContent = "Saving…";
  const saved = await (await api("POST", `/play/api/threads/${state.thread}/save`, { name })).json();
  status.textContent = `Saved ${saved.scenario} and its snapshot ${saved.snapshot}. Run: ${saved.command}`;
}

// ---- replay on the new version ----

async function replayConversation() {
  if (!state.thread) throw new Error("start a conversation first");
  const result = await (await api("POST", `/play/api/threads/${state.thread}/replay`, {})).json();
  const pre = $("replay-diff");
  let text;
  if (!result.edited) text = "The flow file has not been edited since the playground started: nothing to compare.";
  else if (!result.changed) text = "The edit does not change this conversation's transcript.";
  else text = result.diff;
  for (const [label, side] of [["before the edit", result.before], ["after the edit", result.after]]) {
    if (side.problems) text += `\n\nThe replay ${label} stopped early:\n${side.problems}`;
  }
  pre.textContent = text;
  pre.hidden = false;
}

// ---- wiring ----

async function guarded(button, work) {
  if (state.busy) return;
  state.busy = true;
  if (button) button.disabled = true;
  try {
    await work();
  } catch (error) {
    const status = $("save-status");
    status.textContent = `Error: ${error.message || error}`;
    status.classList.add("error");
  } finally {
    state.busy = false;
    if (button) button.disabled = false;
  }
}

function wire() {
  $("flow").addEventListener("change", () => {
    state.assistant = $("flow").value;
    showFlow();
    newThread();
  });
  $("new-thread").addEventListener("click", newThread);
  $("threads").addEventListener("change", () => guarded(null, () => reopen($("threads").value)));
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const box = $("message");
    const text = box.value.trim();
    if (!text) return;
    box.value = "";
    guarded($("send"), () => send(text));
  });
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("client-call").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = $("client-call");
    const output = $("client-output").value;
    const outputs = JSON.parse(form.dataset.calls).map((id) => ({ tool_call_id: id, output }));
    form.hidden = true;
    guarded(null, () => submitOutputs(form.dataset.run, outputs));
  });
  $("save").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded($("save-button"), () => saveScenario($("scenario-name").value.trim()));
  });
  $("replay").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded($("replay-button"), replayConversation);
  });
  $("request-pick").addEventListener("change", () => {
    state.requestPicked = true;
    showRequest();
  });
}

async function start() {
  wire();
  await loadFlows();
  await loadThreads().catch(() => {});
  renderInspector(null);
  document.body.dataset.ready = "true";
  // Reload on edit: the server reloads changed flow files; the page notices the version.
  setInterval(() => loadFlows().catch(() => {}), 500);
}

start().catch((error) => {
  $("reload").textContent = `The playground could not start: ${error.message || error}`;
});
