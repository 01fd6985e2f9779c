// Voice agent call page: WebRTC (audio both ways, events on a data channel), or the
// WebSocket API when WebRTC is unavailable (or ?transport=ws). No build step.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

// ---- API key (optional) -----------------------------------------------------------------
// A typed key is kept in sessionStorage (this tab only), never in a URL: each call trades it
// for a short-lived client token, sent as a Bearer header, or as ?token= on the WebSocket
// (browsers cannot set its headers). Without a key nothing is sent (a server with auth off).
const KEY_STORE = "voiceAgent.apiKey";

class HttpError extends Error {
  constructor(status, detail) {
    super(`${status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
    this.status = status;
  }
}

const auth = {
  token: null,

  async start() {
    this.token = null;
    const key = $("key").value.trim();
    if (!key) {
      sessionStorage.removeItem(KEY_STORE);
      return;
    }
    sessionStorage.setItem(KEY_STORE, key);
    const body = await api("/v1/client-tokens", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
      body: JSON.stringify({ verbs: ["converse", "read"], ttl_s: 600 }),
    });
    this.token = body.token;
  },
  headers(headers = {}) {
    return this.token ? { ...headers, Authorization: `Bearer ${this.token}` } : headers;
  },
  query() {
    return this.token ? `?token=${encodeURIComponent(this.token)}` : "";
  },
};

// fetch with the client token, if there is one; the JSON reply, or an HttpError.
async function api(path, options = {}) {
  const reply = await fetch(path, { ...options, headers: auth.headers(options.headers) });
  const body = reply.status === 204 ? null : await reply.json().catch(() => null);
  if (!reply.ok) throw new HttpError(reply.status, (body && body.detail) || reply.statusText);
  return body;
}

// ---- conversation view -----------------------------------------------------------------
const ui = {
  agent: new Map(), // turn_index -> agent bubble
  users: new Set(), // turns whose user bubble is shown
  typed: null, // a typed message waiting for its turn index

  add(kind, text) {
    const el = document.createElement("div");
    el.className = `msg ${kind}`;
    el.textContent = text;
    $("history").append(el);
    $("history").scrollTop = $("history").scrollHeight;
    return el;
  },
  toolCall(name, args) { // the agent acts: shown as it happens
    this.add("tool", `\u2192 ${name}(${args})`);
  },
  toolDone(name, outcome, detail) {
    const word = outcome.replace("TOOL_OUTCOME_", "").toLowerCase().replace("_", " ");
    this.add("tool", `${name}: ${word}${detail ? ` (${detail})` : ""}`);
  },
  state(name) {
    $("state").textContent = name;
    $("state").className = `state ${name}`;
  },
  user(turn, text) {
    if (this.typed && this.typed.textContent === text) this.claimTyped(turn); // echo of typing
    if (this.users.has(turn)) return;
    this.users.add(turn);
    this.add("user", text).dataset.turn = turn;
  },
  claimTyped(turn) {
    if (this.typed && !this.users.has(turn)) {
      this.users.add(turn);
      this.typed.dataset.turn = turn;
    }
    this.typed = null;
  },
  agentDelta(turn, text) {
    this.claimTyped(turn);
    if (!this.agent.has(turn)) this.agent.set(turn, this.add("agent", ""));
    const el = this.agent.get(turn);
    el.textContent += text;
    $("history").scrollTop = $("history").scrollHeight;
  },
  turnDone(turn, userText, agentText, latency, interrupted) {
    this.claimTyped(turn);
    if (userText) this.user(turn, userText);
    if (!this.agent.has(turn) && agentText) this.agent.set(turn, this.add("agent", agentText));
    const el = this.agent.get(turn);
    if (!el) return;
    if (interrupted) el.classList.add("cut");
    const ms = (v) => (v >= 0 ? `${v} ms` : "–");
    const note = document.createElement("span");
    note.className = "latency";
    note.textContent = `${interrupted ? "interrupted · " : ""}first audio after ` +
      `${ms(latency.end_of_speech_to_first_audio_ms)} (STT ${ms(latency.vad_stop_to_transcript_ms)}` +
      ` · LLM ${ms(latency.llm_first_token_ms)} · TTS ${ms(latency.tts_first_byte_ms)})`;
    el.append(note);
  },
};

// ---- WebRTC ------------------------------------------------------------------------------
class WebRtcCall {
  constructor() { this.pcId = null; this.pending = []; }

  async start() {
    const config = await api("/webrtc/config");
    this.pc = new RTCPeerConnection({ iceServers: config.ice_servers });
    this.mic = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    this.mic.getTracks().forEach((t) => this.pc.addTrack(t, this.mic));
    this.pc.ontrack = (e) => {
      $("agent-audio").srcObject = e.streams[0] || new MediaStream([e.track]);
      $("agent-audio").play().catch(() => {});
    };
    this.dc = this.pc.createDataChannel("events");
    this.dc.onmessage = (e) => onEvent(JSON.parse(e.data));
    this.pc.onicecandidate = (e) => this.trickle(e.candidate);
    this.pc.onconnectionstatechange = () => {
      const s = this.pc.connectionState;
      if (s === "failed" || s === "closed") end(`connection ${s}`);
    };
    await this.pc.setLocalDescription(await this.pc.createOffer());
    const answer = await api("/webrtc/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: this.pc.localDescription.sdp, type: "offer" }),
    });
    this.pcId = answer.pc_id;
    $("session").textContent = `session ${answer.session_id}`;
    await this.pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    this.flush();
    this.statsTimer = setInterval(() => this.showStats(), 1000);
  }

  trickle(candidate) {
    this.pending.push(candidate ? candidate.toJSON() : { candidate: "" });
    if (this.pcId) this.flush();
  }

  flush() {
    if (!this.pending.length) return;
    const candidates = this.pending.splice(0);
    api("/webrtc/offer", {
      method: "PATCH",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ pc_id: this.pcId, candidates }),
    }).catch(() => {});
  }

  send(message) {
    if (this.dc && this.dc.readyState === "open") this.dc.send(JSON.stringify(message));
  }

  async stats() {
    const out = { bytesReceived: 0, totalAudioEnergy: 0, packetsReceived: 0 };
    if (!this.pc) return out;
    (await this.pc.getStats()).forEach((r) => {
      if (r.type === "inbound-rtp" && r.kind === "audio") Object.assign(out, r);
    });
    return out;
  }

  async showStats() {
    const s = await this.stats();
    $("audio-stats").textContent = `agent audio ${(s.bytesReceived / 1024).toFixed(0)} kB`;
  }

  close() { // keepalive: the hang-up still goes out when the page is closing
    clearInterval(this.statsTimer);
    if (this.pcId) {
      fetch(`/webrtc/calls/${this.pcId}`, {
        method: "DELETE", keepalive: true, headers: auth.headers(),
      }).catch(() => {});
    }
    if (this.mic) this.mic.getTracks().forEach((t) => t.stop());
    if (this.pc) this.pc.close();
  }
}

// ---- WebSocket fallback ------------------------------------------------------------------
class WebSocketCall {
  async start() {
    const id = crypto.randomUUID ? crypto.randomUUID() : String(Date.now());
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.ws = new WebSocket(`${scheme}://${location.host}/ws/voice-agent/${id}${auth.query()}`);
    this.ws.onmessage = (e) => onWsMessage(JSON.parse(e.data));
    this.ws.onclose = (e) => end(e.reason || "connection closed");
    await new Promise((ok, fail) => {
      this.ws.onopen = ok;
      this.ws.onerror = () => fail(new Error("the WebSocket did not open"));
    });
    this.mic = await navigator.mediaDevices.getUserMedia({ audio: true });
    this.ctx = new AudioContext();
    const source = this.ctx.createMediaStreamSource(this.mic);
    this.node = this.ctx.createScriptProcessor(4096, 1, 1);
    this.node.onaudioprocess = (e) => this.sendPcm(e.inputBuffer.getChannelData(0));
    source.connect(this.node);
    this.node.connect(this.ctx.destination);
  }

  sendPcm(floats) {
    const pcm = new Int16Array(floats.length);
    floats.forEach((v, i) => { pcm[i] = Math.max(-1, Math.min(1, v)) * 0x7fff; });
    const bytes = new Uint8Array(pcm.buffer);
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    this.send({ type: "audio_chunk", audio_data: btoa(binary), format: "pcm16",
                sample_rate: this.ctx.sampleRate, channels: 1 });
  }

  send(message) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  async stats() { return {}; }

  close() {
    if (this.node) this.node.disconnect();
    if (this.ctx) this.ctx.close();
    if (this.mic) this.mic.getTracks().forEach((t) => t.stop());
    if (this.ws) this.ws.close();
  }
}

// ---- events from either transport --------------------------------------------------------
function onEvent(event) { // the gRPC stream's events, as JSON
  const [kind, body] = Object.entries(event)[0];
  if (kind === "session_started") ui.add("note", body.resumed ? "Session resumed" : "Connected");
  else if (kind === "state_changed") ui.state(body.state.replace("CONVERSATION_STATE_", "").toLowerCase());
  else if (kind === "transcript") ui.user(body.turn_index, body.text);
  else if (kind === "agent_text_delta") ui.agentDelta(body.turn_index, body.text);
  else if (kind === "turn_completed") {
    ui.turnDone(body.turn_index, body.user_text, body.agent_text, body.latency, body.interrupted);
  } else if (kind === "tool_call") ui.toolCall(body.name, body.arguments_json);
  else if (kind === "tool_call_done") ui.toolDone(body.name, body.outcome, body.error || body.reason);
  else if (kind === "error") ui.add("error", body.message);
}

function onWsMessage(m) { // the WebSocket API's messages
  if (m.type === "session_started") {
    ui.add("note", "Connected (WebSocket)");
    $("session").textContent = `session ${m.session_id}`;
  } else if (m.type === "state") ui.state(m.state);
  else if (m.type === "transcription") ui.user(m.turn_index, m.text);
  else if (m.type === "agent_text_delta") ui.agentDelta(m.turn_index, m.text);
  else if (m.type === "conversation_response") {
    ui.turnDone(m.turn_index, m.user_text, m.text, m.latency, m.interrupted);
  } else if (m.type === "audio_response") {
    new Audio(`data:audio/mp3;base64,${m.audio_base64}`).play().catch(() => {});
  } else if (m.type === "tool_call") ui.toolCall(m.name, m.arguments_json);
  else if (m.type === "tool_call_done") ui.toolDone(m.name, m.outcome, m.error || m.reason);
  else if (m.type === "error") ui.add("error", m.message);
}

// ---- controls ----------------------------------------------------------------------------
let call = null;

function setInCall(on) {
  $("call").disabled = on;
  $("hangup").disabled = !on;
  $("text").disabled = !on;
  $("send").disabled = !on;
  $("key").disabled = on;
}

function end(reason) {
  if (!call) return;
  const ending = call;
  call = null;
  ending.close();
  setInCall(false);
  ui.state("ended");
  ui.add("note", `Call ended${reason ? ` (${reason})` : ""}`);
}

$("key").value = sessionStorage.getItem(KEY_STORE) || "";

$("call").onclick = async () => {
  const webrtc = "RTCPeerConnection" in window && params.get("transport") !== "ws";
  call = webrtc ? new WebRtcCall() : new WebSocketCall();
  window.voiceAgent.call = call;
  $("transport").textContent = webrtc ? "WebRTC" : "WebSocket";
  setInCall(true);
  ui.state("connecting");
  try {
    await auth.start();
    await call.start();
  } catch (err) {
    ui.add("error", `Could not start the call: ${err.message || err}`);
    end("failed");
    if (err.status === 401 || err.status === 403) { // a missing, wrong or too weak key
      $("state").textContent = `${err.status} ${err.status === 401 ? "unauthorized" : "forbidden"}`;
      $("state").className = "state failed";
    }
  }
};

$("hangup").onclick = () => end("hung up");

$("text-form").onsubmit = (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (!text || !call) return;
  call.send({ type: "text_input", text });
  ui.typed = ui.add("user", text);
  $("text").value = "";
};

window.addEventListener("pagehide", () => { if (call) call.close(); });
window.voiceAgent = { ui, call: null, stats: () => (call ? call.stats() : Promise.resolve({})) };
