// The MFA step's "Use my security key or passkey": webauthn.js's ceremony against the console's
// two JSON routes of this step (the challenge id stays in its HttpOnly cookie, so the page
// never holds it). Success sets the session cookies; the answer names where to go next.
import { credentialJSON, requestOptions, sentence } from "/static/webauthn.js";

const hook = document.querySelector("[data-mfa-webauthn]");

async function post(url, body) {
  const answer = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body || {}),
  });
  let data = null;
  try { data = await answer.json(); } catch (_) { data = null; }
  if (!answer.ok) {
    const error = new Error((data && data.detail) || "That did not work. Try again.");
    error.status = answer.status;
    throw error;
  }
  return data;
}

if (hook) {
  const slug = hook.dataset.slug;
  const base = `/t/${slug}/sign-in/mfa/webauthn`;
  const use = hook.querySelector("#webauthn-verify");
  const line = hook.querySelector(".webauthn-status");
  const say = (text) => { line.textContent = text; };
  if (!window.PublicKeyCredential) {
    say("This browser cannot use security keys or passkeys. Choose another method.");
  } else {
    use.hidden = false;
    use.addEventListener("click", async () => {
      use.disabled = true;
      try {
        say("Follow your browser's prompt…");
        const options = await post(`${base}/options`);
        const credential = await navigator.credentials.get({ publicKey: requestOptions(options.publicKey) });
        const done = await post(`${base}/verify`, { credential: credentialJSON(credential), next: hook.dataset.next });
        say("Signed in.");
        window.location.assign(done.next);
      } catch (error) {
        if (error.status === 401) {
          window.location.assign(`/t/${slug}/sign-in?notice=mfa-expired`);
          return;
        }
        say(sentence(error));
      } finally {
        use.disabled = false;
      }
    });
  }
}
