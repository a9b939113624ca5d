// WebAuthn in the browser pages: registering a security key or passkey, the WebAuthn second
// step of a password sign-in, and the passwordless passkey sign-in. The module fills the
// pages' hook elements (data-hook="webauthn-register" | "webauthn-second-factor" |
// "passkey-sign-in") and talks to /api/v1/auth/webauthn/… with the cookie session.
// The server's options are JSON (base64url for bytes); the browser's API wants ArrayBuffers.
import { api } from "/static/kanvaro-api.js";

const BASE = "/api/v1/auth/webauthn";

function toBytes(base64url) {
  const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
  const padded = base64 + "===".slice((base64.length + 3) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)).buffer;
}

function toBase64url(buffer) {
  let text = "";
  for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function withIds(descriptors) {
  return (descriptors || []).map((d) => ({ ...d, id: toBytes(d.id) }));
}

function creationOptions(publicKey) {
  return {
    ...publicKey,
    challenge: toBytes(publicKey.challenge),
    user: { ...publicKey.user, id: toBytes(publicKey.user.id) },
    excludeCredentials: withIds(publicKey.excludeCredentials),
  };
}

function requestOptions(publicKey) {
  return {
    ...publicKey,
    challenge: toBytes(publicKey.challenge),
    allowCredentials: withIds(publicKey.allowCredentials),
  };
}

// The credential as the server reads it (what PublicKeyCredential.toJSON() gives, built by
// hand for browsers without it).
function credentialJSON(credential) {
  const r = credential.response;
  const response = { clientDataJSON: toBase64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = toBase64url(r.attestationObject);
    if (r.getTransports) response.transports = r.getTransports();
  } else {
    response.authenticatorData = toBase64url(r.authenticatorData);
    response.signature = toBase64url(r.signature);
    if (r.userHandle) response.userHandle = toBase64url(r.userHandle);
  }
  return {
    id: credential.id,
    rawId: toBase64url(credential.rawId),
    type: credential.type,
    response,
    clientExtensionResults: credential.getClientExtensionResults(),
    authenticatorAttachment: credential.authenticatorAttachment || undefined,
  };
}

// What a failed ceremony tells the person (the browser's own errors say little).
function sentence(error) {
  if (error && error.name === "NotAllowedError") {
    return "The security key or passkey did not confirm it is you (cancelled, timed out or not verified).";
  }
  if (error && error.name === "InvalidStateError") return "This authenticator is already registered.";
  return (error && error.message) || "That did not work. Try again.";
}

function statusLine(hook) {
  const line = Object.assign(document.createElement("p"), { className: "webauthn-status" });
  line.setAttribute("role", "status");
  line.setAttribute("aria-live", "polite");
  hook.append(line);
  return (text) => { line.textContent = text; };
}

function button(hook, id, text) {
  const b = Object.assign(document.createElement("button"), { type: "button", id, textContent: text });
  hook.append(b);
  return b;
}

function supported(say) {
  if (window.PublicKeyCredential) return true;
  say("This browser cannot use security keys or passkeys.");
  return false;
}

async function run(trigger, say, ceremony) {
  if (!supported(say)) return;
  trigger.disabled = true;
  try {
    await ceremony();
  } catch (error) {
    say(sentence(error));
  } finally {
    trigger.disabled = false;
  }
}

function signedIn() {
  document.dispatchEvent(new CustomEvent("kanvaro:signed-in"));
}

function registerHook(hook) {
  const label = Object.assign(document.createElement("label"), {
    htmlFor: "webauthn-name", textContent: "Name of the key or device",
  });
  const name = Object.assign(document.createElement("input"), {
    id: "webauthn-name", type: "text", maxLength: 100, placeholder: "e.g. Work laptop",
  });
  const row = document.createElement("p");
  row.append(label, " ", name);
  hook.append(row);
  const add = button(hook, "webauthn-register", "Add a security key or passkey");
  const say = statusLine(hook);
  add.addEventListener("click", () => run(add, say, async () => {
    say("Follow your browser's prompt…");
    const options = await api(`${BASE}/register/options`, { method: "POST" });
    const credential = await navigator.credentials.create({
      publicKey: creationOptions(options.publicKey),
    });
    const body = { challengeId: options.challengeId, credential: credentialJSON(credential) };
    if (name.value.trim()) body.name = name.value.trim();
    const added = await api(`${BASE}/register/verify`, { method: "POST", body });
    name.value = "";
    say(`Added “${added.name}”.`);
    document.dispatchEvent(new CustomEvent("kanvaro:mfa-changed", { detail: added }));
  }));
}

function secondFactorHook(hook) {
  let sessionId = null;
  document.addEventListener("kanvaro:mfa-step", (event) => { sessionId = event.detail.sessionId; });
  const use = button(hook, "webauthn-verify", "Use my security key or passkey");
  const say = statusLine(hook);
  use.addEventListener("click", () => run(use, say, async () => {
    if (!sessionId) throw new Error("Sign in with your password first.");
    say("Follow your browser's prompt…");
    const options = await api(`${BASE}/authenticate/options`, { method: "POST", body: { sessionId } });
    const credential = await navigator.credentials.get({ publicKey: requestOptions(options.publicKey) });
    await api(`${BASE}/authenticate/verify`, {
      method: "POST",
      body: { sessionId, credential: credentialJSON(credential), transport: "cookie" },
    });
    say("Signed in.");
    signedIn();
  }));
}

function passkeyHook(hook) {
  const use = button(hook, "passkey-sign-in", "Sign in with a passkey");
  const say = statusLine(hook);
  use.addEventListener("click", () => run(use, say, async () => {
    const tenantInput = document.getElementById("tenant");
    const tenant = tenantInput ? tenantInput.value.trim() : "";
    say("Follow your browser's prompt…");
    const options = await api(`${BASE}/passkey/options`, {
      method: "POST", body: tenant ? { tenant } : {},
    });
    const credential = await navigator.credentials.get({ publicKey: requestOptions(options.publicKey) });
    await api(`${BASE}/passkey/verify`, {
      method: "POST",
      body: { sessionId: options.sessionId, credential: credentialJSON(credential), transport: "cookie" },
    });
    say("Signed in.");
    signedIn();
  }));
}

const HOOKS = {
  "webauthn-register": registerHook,
  "webauthn-second-factor": secondFactorHook,
  "passkey-sign-in": passkeyHook,
};

for (const [name, fill] of Object.entries(HOOKS)) {
  for (const hook of document.querySelectorAll(`[data-hook="${name}"]`)) fill(hook);
}

// The ceremony's pieces, for the console's own page modules (they call the same routes).
export { creationOptions, credentialJSON, requestOptions, sentence };
