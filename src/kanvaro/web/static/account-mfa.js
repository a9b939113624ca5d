// The account's second factors: the list (GET /api/v1/users/{id}/mfa), TOTP enrollment
// (POST /api/v1/auth/mfa/setup, then verify-setup with a code from the app), and backup
// codes, shown once: they live only in this script's memory and the page's list until the
// user says he has saved them (or leaves), and the download is a Blob made here, never a
// server URL. Changes that need a recent sign-in ask for the password (POST
// /api/v1/auth/reauth) and are tried again once.
import { api, show } from "/static/kanvaro-api.js";

const SIGN_IN = "/sign-in?next=" + encodeURIComponent("/account/mfa");
const LABELS = {
  totp: "Authenticator app",
  email: "Email code",
  sms: "Text message code",
  webauthn: "Security key or passkey",
};
const QR_PREFIX = "data:image/png;base64,";

const $ = (id) => document.getElementById(id);
const message = $("message");
const say = (text) => { message.textContent = text; };

let me = null; // the signed-in user (GET /api/v1/auth/me)
let enrolling = null; // the TOTP method being set up: {methodId, backupCodes}
let downloadUrl = null;

function signInAgain() {
  window.location.assign(SIGN_IN);
}

// The password prompt of a step-up: resolves true once /auth/reauth accepted it.
function reauthenticate() {
  const form = $("reauth");
  show(form, true);
  $("reauth-password").focus();
  return new Promise((resolve) => {
    const done = (ok) => {
      form.removeEventListener("submit", onSubmit);
      $("reauth-cancel").removeEventListener("click", onCancel);
      $("reauth-password").value = "";
      show(form, false);
      resolve(ok);
    };
    const onCancel = () => done(false);
    const onSubmit = async (event) => {
      event.preventDefault();
      try {
        await api("/api/v1/auth/reauth", {
          method: "POST", body: { password: $("reauth-password").value },
        });
        done(true);
      } catch (error) {
        $("reauth-password").value = "";
        say(error.message);
      }
    };
    form.addEventListener("submit", onSubmit);
    $("reauth-cancel").addEventListener("click", onCancel);
  });
}

// Runs `call`; a 401 "reauth-required" asks for the password and runs it once more. Any
// other 401 means the session is gone: back to sign-in.
async function withStepUp(call) {
  try {
    return await call();
  } catch (error) {
    if (error.status === 401 && error.kind === "reauth-required") {
      say(error.message);
      if (!(await reauthenticate())) throw error;
      say("");
      return await call();
    }
    if (error.status === 401) signInAgain();
    throw error;
  }
}

function when(value) {
  return value ? new Date(value).toLocaleString() : "never";
}

function cell(text) {
  return Object.assign(document.createElement("td"), { textContent: text });
}

function methodRow(method) {
  const row = document.createElement("tr");
  row.dataset.method = method.method;
  row.dataset.methodId = method.id;
  const remove = Object.assign(document.createElement("button"), {
    type: "button", className: "link", textContent: "Remove",
  });
  remove.addEventListener("click", () => removeMethod(method));
  const actions = document.createElement("td");
  actions.append(remove);
  row.append(
    cell(LABELS[method.method] || method.method),
    cell(method.name || ""),
    cell(when(method.createdAt)),
    cell(when(method.lastUsedAt)),
    actions,
  );
  return row;
}

async function refreshMethods() {
  let overview;
  try {
    overview = await api(`/api/v1/users/${me.id}/mfa`);
  } catch (error) {
    if (error.status === 401) signInAgain();
    say(error.message);
    return;
  }
  const verified = overview.methods.filter((m) => m.verified);
  $("method-rows").replaceChildren(...verified.map(methodRow));
  show($("methods"), verified.length > 0);
  show($("no-methods"), verified.length === 0);
  show($("required-note"), overview.required && verified.length === 0);
  const left = overview.backupCodesRemaining;
  $("backup-left").textContent = verified.length
    ? `Backup codes left: ${left}.`
    : "";
  show($("regenerate"), verified.length > 0);
}

async function removeMethod(method) {
  try {
    await withStepUp(() =>
      api(`/api/v1/users/${me.id}/mfa/${method.id}`, { method: "DELETE" }),
    );
    say("The method was removed.");
  } catch (error) {
    say(error.message);
  }
  await refreshMethods();
}

function showBackupCodes(codes) {
  hideBackupCodes();
  const items = codes.map((code) => Object.assign(document.createElement("li"), {
    textContent: code,
  }));
  $("backup-list").replaceChildren(...items);
  const text = [
    "Kanvaro backup codes" + (me ? ` for ${me.email}` : ""),
    "Each code signs you in once.",
    "",
    ...codes,
    "",
  ].join("\n");
  downloadUrl = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
  $("backup-download").href = downloadUrl;
  show($("backup-codes"), true);
}

function hideBackupCodes() {
  $("backup-list").replaceChildren();
  $("backup-download").href = "#";
  if (downloadUrl) URL.revokeObjectURL(downloadUrl);
  downloadUrl = null;
  show($("backup-codes"), false);
}

function endEnrollment() {
  enrolling = null;
  $("totp-secret").textContent = "";
  $("totp-qr").removeAttribute("src");
  $("totp-code").value = "";
  show($("totp-confirm"), false);
  show($("totp-start"), true);
}

$("totp-start").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = { method: "totp" };
  const name = $("totp-name").value.trim();
  if (name) body.name = name;
  try {
    const answer = await withStepUp(() => api("/api/v1/auth/mfa/setup", { method: "POST", body }));
    enrolling = { methodId: answer.methodId, backupCodes: answer.backupCodes || [] };
    if ((answer.qrCode || "").startsWith(QR_PREFIX)) $("totp-qr").src = answer.qrCode;
    $("totp-secret").textContent = answer.secret;
    show($("totp-start"), false);
    show($("totp-confirm"), true);
    $("totp-code").focus();
    say("");
  } catch (error) {
    say(error.message);
  }
});

$("totp-confirm").addEventListener("submit", async (event) => {
  event.preventDefault();
  const code = $("totp-code").value.replace(/\s+/g, "");
  try {
    const answer = await api("/api/v1/auth/mfa/verify-setup", {
      method: "POST", body: { method: "totp", code, methodId: enrolling.methodId },
    });
    const codes = (answer && answer.backupCodes) || enrolling.backupCodes;
    endEnrollment();
    $("totp-name").value = "";
    say("Your authenticator app is set up.");
    if (codes.length) showBackupCodes(codes);
    await refreshMethods();
  } catch (error) {
    $("totp-code").value = "";
    if (error.status === 401) signInAgain();
    say(error.message);
  }
});

$("totp-cancel").addEventListener("click", () => { endEnrollment(); say(""); });
$("backup-done").addEventListener("click", hideBackupCodes);

$("regenerate").addEventListener("click", () => {
  show($("regenerate"), false);
  show($("regenerate-confirm"), true);
});
$("regenerate-no").addEventListener("click", () => {
  show($("regenerate-confirm"), false);
  show($("regenerate"), true);
});
$("regenerate-yes").addEventListener("click", async () => {
  show($("regenerate-confirm"), false);
  show($("regenerate"), true);
  try {
    const answer = await withStepUp(() =>
      api(`/api/v1/users/${me.id}/mfa/regenerate-backup-codes`, { method: "POST" }),
    );
    showBackupCodes(answer.backupCodes);
    say("New backup codes: the old ones no longer work.");
  } catch (error) {
    say(error.message);
  }
  await refreshMethods();
});

$("sign-out").addEventListener("click", async () => {
  try {
    await api("/api/v1/auth/logout", { method: "POST" });
  } catch (_) {
    // Signed out already, or the session is gone: the sign-in page is next either way.
  }
  hideBackupCodes();
  window.location.assign("/sign-in");
});

// The WebAuthn module added a security key or passkey in its hook: show it in the list.
document.addEventListener("kanvaro:mfa-changed", () => { if (me) refreshMethods(); });

// Leaving the page forgets the codes (a page kept in the back/forward cache included).
window.addEventListener("pagehide", hideBackupCodes);

async function start() {
  try {
    me = await api("/api/v1/auth/me");
  } catch (error) {
    if (error.status === 401) {
      signInAgain();
      return;
    }
    say(error.message);
    return;
  }
  $("who").textContent = me.email;
  show($("page"), true);
  await refreshMethods();
}

start();
