// Sign-in in two steps. The password step posts to /api/v1/auth/login with the cookie
// transport; when the answer is {requiresMFA: true, sessionId, methods} the MFA step asks for
// a code from one of the methods (email and SMS codes are sent on request) and posts it to
// /api/v1/auth/mfa/verify, which sets the session cookies. `sessionId` is a short-lived,
// single-use challenge, kept only in this script's memory.
//
// Hooks for the WebAuthn script (another module): the page dispatches "kanvaro:mfa-step"
// on `document` with {sessionId, methods} when the second step begins, shows
// #webauthn-hook while "webauthn" is the chosen method, and goes on to the next page when
// that script dispatches "kanvaro:signed-in".
import { api, safeNextPath, show } from "/static/kanvaro-api.js";

const AFTER_SIGN_IN = "/account/mfa";
const BACKUP_CODE = "backup_code";
const LABELS = {
  totp: "Authenticator app",
  email: "A code by email",
  sms: "A code by text message",
  webauthn: "Security key or passkey",
  backup_code: "Backup code",
};
const CODE_LABELS = {
  totp: "The 6-digit code your authenticator app shows",
  email: "The code we emailed you",
  sms: "The code we texted you",
  backup_code: "One of your backup codes",
};
const SENDS_CODE = new Set(["email", "sms"]);

const $ = (id) => document.getElementById(id);
const passwordStep = $("password-step");
const mfaStep = $("mfa-step");
const message = $("message");
const say = (text) => { message.textContent = text; };

const params = new URLSearchParams(window.location.search);
// A single sign-on that needs Kanvaro's second step comes back here with the challenge in
// the fragment (#mfa=...&methods=...&next=...), which no server ever sees.
const fragment = new URLSearchParams(window.location.hash.slice(1));
let nextPath = params.get("next") || fragment.get("next");
let challenge = null; // {sessionId, methods, method}

function goOn() {
  window.location.assign(safeNextPath(nextPath, AFTER_SIGN_IN));
}

function ssoLogin(loginUrl) {
  const url = new URL(loginUrl, window.location.origin);
  url.searchParams.set("returnTo", safeNextPath(nextPath, AFTER_SIGN_IN));
  window.location.assign(url.toString());
}

// The tenant's identity providers, one button each (GET /t/{slug}/auth lists them).
async function listProviders(tenant) {
  if (!/^[A-Za-z0-9-]{1,63}$/.test(tenant)) return;
  let answer;
  try {
    answer = await api(`/t/${encodeURIComponent(tenant)}/auth`);
  } catch (_) {
    return; // unknown tenant: the password form stays
  }
  const list = $("sso-list");
  list.replaceChildren();
  for (const provider of answer.providers || []) {
    const button = Object.assign(document.createElement("button"), {
      type: "button", className: "sso-provider", textContent: provider.name,
    });
    button.dataset.providerId = provider.id;
    button.addEventListener("click", () => ssoLogin(provider.loginUrl));
    const item = document.createElement("li");
    item.append(button);
    list.append(item);
  }
  show($("sso-providers"), list.children.length > 0);
}

// Home-realm discovery: the address's verified domain names the identity provider.
async function discoverSso() {
  const email = $("email").value.trim();
  if (!email) {
    say("Enter your email address first.");
    return;
  }
  const body = { email };
  const tenant = $("tenant").value.trim();
  if (tenant) body.tenant = tenant;
  try {
    const answer = await api("/api/v1/sso/discover", { method: "POST", body });
    if (answer && answer.sso) ssoLogin(answer.loginUrl);
    else say("Your organization has no single sign-on for this address; use your password.");
  } catch (error) {
    say(error.message);
  }
}

function busy(form, isBusy) {
  for (const button of form.querySelectorAll("button")) button.disabled = isBusy;
}

function chooseMethod(method) {
  challenge.method = method;
  const webauthn = method === "webauthn";
  show($("code-row"), !webauthn);
  show($("verify"), !webauthn);
  show($("webauthn-hook"), webauthn);
  show($("send-row"), SENDS_CODE.has(method));
  show($("use-backup"), method !== BACKUP_CODE && challenge.methods.includes(BACKUP_CODE));
  const code = $("code");
  code.value = "";
  code.required = !webauthn;
  code.inputMode = method === BACKUP_CODE ? "text" : "numeric";
  $("code-label").textContent = CODE_LABELS[method] || "Code";
  for (const radio of document.querySelectorAll("input[name=method]")) {
    radio.checked = radio.value === method;
  }
  if (!webauthn) code.focus();
}

function methodChoices(methods) {
  const box = $("method-choices");
  box.replaceChildren();
  for (const method of methods) {
    const id = `method-${method}`;
    const radio = Object.assign(document.createElement("input"), {
      type: "radio", name: "method", value: method, id,
    });
    radio.addEventListener("change", () => chooseMethod(method));
    const label = Object.assign(document.createElement("label"), {
      htmlFor: id, textContent: LABELS[method] || method,
    });
    const row = document.createElement("div");
    row.append(radio, " ", label);
    box.append(row);
  }
}

function beginMfaStep(answer) {
  const methods = answer.methods || [];
  challenge = { sessionId: answer.sessionId, methods, method: null };
  $("password").value = ""; // not needed again: the challenge stands for it
  methodChoices(methods);
  show(passwordStep, false);
  show(mfaStep, true);
  // Backup codes are the fallback: start with a real method when there is one.
  chooseMethod(methods.find((m) => m !== BACKUP_CODE) || methods[0]);
  say("");
  document.dispatchEvent(
    new CustomEvent("kanvaro:mfa-step", { detail: { sessionId: answer.sessionId, methods } }),
  );
}

function startOver() {
  challenge = null;
  show(mfaStep, false);
  show(passwordStep, true);
  $("password").value = "";
  $("password").focus();
}

passwordStep.addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = passwordStep.elements;
  const body = {
    email: form.email.value.trim(),
    password: form.password.value,
    transport: "cookie",
  };
  const tenant = form.tenant.value.trim();
  if (tenant) body.tenant = tenant;
  busy(passwordStep, true);
  say("Signing in…");
  try {
    const answer = await api("/api/v1/auth/login", { method: "POST", body });
    if (answer && answer.requiresMFA) {
      beginMfaStep(answer);
    } else {
      say("Signed in.");
      goOn();
    }
  } catch (error) {
    say(error.message);
  } finally {
    busy(passwordStep, false);
  }
});

$("send-code").addEventListener("click", async () => {
  busy(mfaStep, true);
  try {
    await api("/api/v1/auth/mfa/send", {
      method: "POST",
      body: { sessionId: challenge.sessionId, method: challenge.method },
    });
    say("The code is on its way.");
  } catch (error) {
    say(error.message);
  } finally {
    busy(mfaStep, false);
  }
});

mfaStep.addEventListener("submit", async (event) => {
  event.preventDefault();
  const code = $("code").value.trim();
  if (!code) return;
  busy(mfaStep, true);
  say("Checking…");
  try {
    await api("/api/v1/auth/mfa/verify", {
      method: "POST",
      body: { sessionId: challenge.sessionId, code, method: challenge.method, transport: "cookie" },
    });
    say("Signed in.");
    goOn();
  } catch (error) {
    $("code").value = "";
    say(error.message);
  } finally {
    busy(mfaStep, false);
  }
});

$("use-backup").addEventListener("click", () => chooseMethod(BACKUP_CODE));
$("start-over").addEventListener("click", () => { say(""); startOver(); });
document.addEventListener("kanvaro:signed-in", goOn);

$("sso-discover").addEventListener("click", discoverSso);
$("tenant").value = params.get("tenant") || "";
if (fragment.get("mfa")) {
  // Forget the challenge id in the address bar and history; this script keeps it.
  window.history.replaceState(null, "", window.location.pathname + window.location.search);
  beginMfaStep({
    sessionId: fragment.get("mfa"),
    methods: (fragment.get("methods") || "").split(",").filter(Boolean),
  });
} else {
  show(passwordStep, true);
  $("email").focus();
  if ($("tenant").value) listProviders($("tenant").value);
  $("tenant").addEventListener("change", () => listProviders($("tenant").value.trim()));
}
