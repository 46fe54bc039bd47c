// Custos approval console. Plain script, no dependencies, nothing loaded from elsewhere.
//
// Votes and sign-ins are signed here with WebCrypto (ECDSA P-256 with SHA-256, or Ed25519) over
// statements built exactly as docs/governance.md describes:
//   str(s)   = u32 big-endian byte length || UTF-8 bytes
//   list(xs) = u32 big-endian count || str(x) for each x
// custos/vote/v1:          custody, request id, requester, wallet, payload sha256, list(intent),
//                          approver, key, decision, reason, time (decimal unix seconds)
// custos/console-login/v1: challenge, key
// Data from the server is only ever put into the page as text (never as HTML).
"use strict";

const state = {
  key: null,          // CryptoKey (private, non-extractable)
  alg: null,          // "ECDSA" or "Ed25519"
  publicText: null,   // "p256:…" or "ed25519:…"
  token: null,        // session bearer token (memory only)
  principal: null,
  requests: [],
  current: null,
};

const $ = (sel) => document.querySelector(sel);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function show(message, kind) {
  const m = $("#message");
  m.textContent = message;
  m.className = kind || "info";
  m.hidden = !message;
}

// ---- bytes ----------------------------------------------------------------------------------

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function b64urlToBytes(s) {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function encodeStatement(fields) {
  const te = new TextEncoder();
  const parts = [];
  const u32 = (n) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, n, false);
    return b;
  };
  const str = (s) => {
    const b = te.encode(String(s));
    parts.push(u32(b.length), b);
  };
  for (const f of fields) {
    if (Array.isArray(f)) {
      parts.push(u32(f.length));
      f.forEach(str);
    } else {
      str(f);
    }
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function voteStatement(ctx, approver, key, decision, reason, at) {
  return encodeStatement([
    "custos/vote/v1", ctx.custody, ctx.request_id, ctx.requester, ctx.wallet,
    ctx.payload_sha256, ctx.intent, approver, key, decision, reason, String(at),
  ]);
}

// ---- keys -----------------------------------------------------------------------------------

function p256Compressed(x, y) {
  const out = new Uint8Array(33);
  out[0] = (y[31] & 1) ? 0x03 : 0x02;
  out.set(x, 1);
  return out;
}

async function importPem(text) {
  const body = text.replace(/-----(BEGIN|END) PRIVATE KEY-----/g, "").replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/=]+$/.test(body) || !text.includes("BEGIN PRIVATE KEY")) {
    throw new Error("this file is not a PKCS#8 PEM private key (expected '-----BEGIN PRIVATE KEY-----')");
  }
  const der = Uint8Array.from(atob(body), (c) => c.charCodeAt(0));
  const candidates = [
    { params: { name: "ECDSA", namedCurve: "P-256" }, alg: "ECDSA" },
    { params: { name: "Ed25519" }, alg: "Ed25519" },
  ];
  try {
    for (const c of candidates) {
      let jwk;
      try {
        // Imported once extractable only to read its public half, then again non-extractable.
        const probe = await crypto.subtle.importKey("pkcs8", der, c.params, true, ["sign"]);
        jwk = await crypto.subtle.exportKey("jwk", probe);
      } catch (e) {
        continue;
      }
      const publicText = c.alg === "ECDSA"
        ? "p256:" + hex(p256Compressed(b64urlToBytes(jwk.x), b64urlToBytes(jwk.y)))
        : "ed25519:" + hex(b64urlToBytes(jwk.x));
      jwk.d = "";
      const key = await crypto.subtle.importKey("pkcs8", der, c.params, false, ["sign"]);
      return { key, alg: c.alg, publicText };
    }
  } finally {
    der.fill(0);
  }
  throw new Error("this key is neither ECDSA P-256 nor Ed25519 (or this browser cannot use it)");
}

async function signBytes(bytes) {
  const params = state.alg === "ECDSA" ? { name: "ECDSA", hash: "SHA-256" } : { name: "Ed25519" };
  return new Uint8Array(await crypto.subtle.sign(params, state.key, bytes));
}

function idb() {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open("custos-console", 1);
    r.onupgradeneeded = () => r.result.createObjectStore("keys");
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

async function idbDo(mode, fn) {
  const db = await idb();
  return new Promise((resolve, reject) => {
    const tx = db.transaction("keys", mode);
    const req = fn(tx.objectStore("keys"));
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function setKey(k, origin) {
  state.key = k.key;
  state.alg = k.alg;
  state.publicText = k.publicText;
  $("#key-status").textContent =
    `Key loaded (${origin}): ${k.publicText} — ${k.alg === "ECDSA" ? "ECDSA P-256" : "Ed25519"}.`;
  $("#signin-button").disabled = false;
}

// ---- server ---------------------------------------------------------------------------------

async function api(path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  let r;
  try {
    r = await fetch(path, { method: "POST", headers, body: JSON.stringify(body || {}) });
  } catch (e) {
    throw new Error("the console server cannot be reached: " + e.message);
  }
  const text = await r.text();
  let data;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new Error(`the server answered ${r.status}: ${text}`);
  }
  if (!r.ok) {
    const err = new Error(data.error ? data.error.message : `HTTP ${r.status}`);
    err.code = data.error ? data.error.code : String(r.status);
    if (r.status === 401 && state.token) signedOut();
    throw err;
  }
  return data;
}

function refusal(e) {
  return e.code ? `Refused (${e.code}): ${e.message}` : `Error: ${e.message}`;
}

// ---- views ----------------------------------------------------------------------------------

function when(unix) {
  if (!unix) return "";
  const d = new Date(unix * 1000);
  const left = unix - Math.floor(Date.now() / 1000);
  const abs = d.toISOString().replace("T", " ").slice(0, 16) + " UTC";
  if (left <= 0) return abs + " (passed)";
  const h = Math.floor(left / 3600);
  const m = Math.floor((left % 3600) / 60);
  return `${abs} (in ${h}h ${m}m)`;
}

function at(unix) {
  return unix ? new Date(unix * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "?";
}

function quorumText(r) {
  if (!r.quorum) return "";
  return `${r.quorum.counted} of ${r.quorum.required} (${r.quorum.roles.join(", ")})`;
}

function what(r) {
  if (!r.intent) return "(not decoded)";
  const i = r.intent;
  const to = i.destinations.map((d) => `${d.amount} to ${d.address}`).join("; ");
  return `${i.kind} ${i.amount} on ${i.network}` + (to ? ` — ${to}` : "");
}

function signedOut() {
  state.token = null;
  state.principal = null;
  $("#who").textContent = "Not signed in";
  $("#logout").hidden = true;
  $("#signin").hidden = false;
  $("#list-section").hidden = true;
  $("#detail").hidden = true;
}

function renderList() {
  const body = $("#pending tbody");
  body.replaceChildren();
  for (const r of state.requests) {
    const tr = document.createElement("tr");
    tr.dataset.requestId = r.request_id;
    tr.dataset.requester = r.requester;
    tr.append(
      el("td", r.request_id, "mono"),
      el("td", r.requester, "mono"),
      el("td", r.wallet),
      el("td", what(r)),
      el("td", r.intent ? r.intent.fee : ""),
      el("td", r.rule || ""),
      el("td", quorumText(r)),
      el("td", r.votes.map((v) => v.approver + (v.counted ? "" : " (not counted)")).join(", ") || "nobody yet"),
      el("td", when(r.expires_at)),
    );
    const open = el("button", "Open");
    open.type = "button";
    open.className = "open";
    open.addEventListener("click", () => openRequest(r.requester, r.request_id));
    const td = el("td");
    td.append(open);
    tr.append(td);
    body.append(tr);
  }
  $("#empty").hidden = state.requests.length > 0;
}

function fact(dl, name, value) {
  dl.append(el("dt", name), el("dd", value));
}

function renderDetail() {
  const r = state.current;
  $("#d-id").textContent = r.request_id;
  const dl = $("#d-facts");
  dl.replaceChildren();
  fact(dl, "State", r.state.replace("_", " "));
  fact(dl, "Requester", r.requester);
  fact(dl, "Wallet", r.wallet);
  if (r.intent) {
    fact(dl, "Action", `${r.intent.kind} on ${r.intent.network}`);
    fact(dl, "Amount", r.intent.amount);
    fact(dl, "Fee", r.intent.fee);
    fact(dl, "Summary", r.intent.summary);
  }
  fact(dl, "Rule", r.rule || "");
  if (r.quorum) fact(dl, "Quorum", quorumText(r));
  if (r.expires_at) fact(dl, "Expires", when(r.expires_at));
  fact(dl, "Payload SHA-256", r.payload_sha256);
  if (r.result && r.result.tx_id) fact(dl, "Transaction", r.result.tx_id);
  if (r.error) fact(dl, "Note", r.error);
  const dest = $("#d-dest tbody");
  dest.replaceChildren();
  for (const d of (r.intent ? r.intent.destinations : [])) {
    const tr = document.createElement("tr");
    tr.append(el("td", d.address, "addr"), el("td", d.amount));
    dest.append(tr);
  }
  for (const d of (r.intent ? r.intent.change : [])) {
    const tr = document.createElement("tr");
    tr.append(el("td", d.address + " (change, back to this wallet)", "addr"), el("td", d.amount));
    dest.append(tr);
  }
  $("#d-lines").textContent = r.vote_context
    ? r.vote_context.intent.join("\n")
    : "This request no longer waits for votes.";
  const votes = $("#d-votes");
  votes.replaceChildren();
  if (r.votes.length === 0) votes.append(el("li", "No votes yet."));
  for (const v of r.votes) {
    const li = el("li", `${v.approver}: ${v.decision} at ${at(v.at)}`
      + (v.reason ? ` — “${v.reason}”` : "") + (v.key ? ` — key ${v.key}` : " — unsigned") + " — ");
    li.append(v.counted ? el("span", "counted", "counted") : el("span", "not counted: " + (v.note || ""), "not-counted"));
    votes.append(li);
  }
  $("#vote-box").hidden = !r.vote_context;
  $("#list-section").hidden = true;
  $("#detail").hidden = false;
}

// ---- actions --------------------------------------------------------------------------------

async function refresh() {
  const page = await api("/api/pending", {});
  state.requests = page.requests;
  renderList();
}

async function openRequest(requester, requestId) {
  try {
    state.current = await api("/api/request", { requester, request_id: requestId });
    $("#reason").value = "";
    show("", "info");
    renderDetail();
  } catch (e) {
    show(refusal(e), "error");
  }
}

async function signIn() {
  if (!state.key) return show("Load your key first.", "error");
  try {
    const { challenge } = await api("/api/challenge", {});
    const sig = await signBytes(encodeStatement(["custos/console-login/v1", challenge, state.publicText]));
    const s = await api("/api/session", { key: state.publicText, challenge, signature: hex(sig) });
    state.token = s.token;
    state.principal = s.principal;
    $("#who").textContent = `Signed in as ${s.principal}`;
    $("#logout").hidden = false;
    $("#signin").hidden = true;
    $("#detail").hidden = true;
    $("#list-section").hidden = false;
    show(`Signed in as ${s.principal} with ${s.key}.`, "ok");
    await refresh();
  } catch (e) {
    show(refusal(e), "error");
  }
}

async function vote(decision) {
  const r = state.current;
  const ctx = r && r.vote_context;
  if (!ctx) return show("This request no longer waits for votes.", "error");
  const reason = $("#reason").value;
  if (decision === "reject" && !reason.trim()) {
    return show("A rejection needs a reason: write it above, it is signed with your vote.", "error");
  }
  try {
    const at = Math.floor(Date.now() / 1000);
    const bytes = voteStatement(ctx, state.principal, state.publicText, decision, reason, at);
    const sig = await signBytes(bytes);
    const after = await api("/api/vote", {
      requester: r.requester, request_id: r.request_id, decision, reason, at,
      key: state.publicText, signature: hex(sig),
    });
    state.current = after;
    renderDetail();
    if (after.state === "signed") {
      show(`Approved: the quorum is met and the request is signed${after.result && after.result.tx_id ? " (transaction " + after.result.tx_id + ")" : ""}.`, "ok");
    } else if (after.state === "rejected") {
      show("Rejected: this request will never be signed.", "ok");
    } else if (after.state === "pending_approval") {
      show(`Your signed approval is recorded: ${quorumText(after)}.`, "ok");
    } else {
      show(`The request is now ${after.state.replace("_", " ")}${after.error ? ": " + after.error : ""}.`, "info");
    }
    refresh().catch(() => {});
  } catch (e) {
    show(refusal(e), "error");
  }
}

async function generate() {
  const principal = $("#gen-principal").value.trim();
  if (!principal) return show("Write your principal first (as the policy names you).", "error");
  try {
    const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
    const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
    const publicText = "p256:" + hex(p256Compressed(raw.slice(1, 33), raw.slice(33, 65)));
    await idbDo("readwrite", (s) => s.put({ privateKey: pair.privateKey, publicText, alg: "ECDSA", principal }, "approver"));
    setKey({ key: pair.privateKey, alg: "ECDSA", publicText }, "generated in this browser");
    const enrol = $("#enrol");
    enrol.textContent = `[approver_keys]\n${JSON.stringify(principal)} = "${publicText}"`;
    enrol.hidden = false;
    $("#use-stored").hidden = false;
    show("A new key was generated and kept in this browser. Give the lines above to compliance: "
      + "you can sign in once they have enrolled it and signed the policy.", "info");
  } catch (e) {
    show("Cannot generate a key in this browser: " + e.message, "error");
  }
}

async function useStored() {
  try {
    const k = await idbDo("readonly", (s) => s.get("approver"));
    if (!k) return show("No key is kept in this browser.", "error");
    setKey({ key: k.privateKey, alg: k.alg, publicText: k.publicText }, `kept in this browser for ${k.principal}`);
  } catch (e) {
    show("Cannot read the key kept in this browser: " + e.message, "error");
  }
}

async function loadFile(input) {
  const file = input.files && input.files[0];
  if (!file) return;
  try {
    setKey(await importPem(await file.text()), "from " + file.name);
    show("", "info");
  } catch (e) {
    show("Cannot use this key file: " + e.message, "error");
  } finally {
    input.value = "";
  }
}

async function logout() {
  try {
    await api("/api/logout", {});
  } catch (e) {
    // Signed out either way.
  }
  signedOut();
  show("Signed out.", "info");
}

document.addEventListener("DOMContentLoaded", async () => {
  if (!window.isSecureContext || !crypto.subtle) {
    show("This page needs a secure context for WebCrypto: open it as http://127.0.0.1:… or http://localhost:…", "error");
    return;
  }
  $("#keyfile").addEventListener("change", (e) => loadFile(e.target));
  $("#signin-button").addEventListener("click", signIn);
  $("#generate").addEventListener("click", generate);
  $("#use-stored").addEventListener("click", useStored);
  $("#refresh").addEventListener("click", () => refresh().catch((e) => show(refusal(e), "error")));
  $("#back").addEventListener("click", () => {
    $("#detail").hidden = true;
    $("#list-section").hidden = false;
    refresh().catch((e) => show(refusal(e), "error"));
  });
  $("#approve").addEventListener("click", () => vote("approve"));
  $("#reject").addEventListener("click", () => vote("reject"));
  $("#logout").addEventListener("click", logout);
  try {
    if (await idbDo("readonly", (s) => s.get("approver"))) $("#use-stored").hidden = false;
  } catch (e) {
    // No IndexedDB: importing a key file still works.
  }
});
