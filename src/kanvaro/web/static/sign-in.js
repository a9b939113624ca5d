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
let challenge = null; // {sessionId, methods, method}

function goOn() {
  window.location.assign(safeNextPath(params.get("next"), AFTER_SIGN_IN));
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

$("tenant").value = params.get("tenant") || "";
show(passwordStep, true);
$("email").focus();
