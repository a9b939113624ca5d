// Sign-in page: "Sign in with a passkey" (passwordless). The ceremony is webauthn.js's, through
// the JSON API's passkey routes with the cookie transport (POST /api/v1/auth/webauthn/passkey/
// options, then /verify, which sets the session cookies); then on to the page asked for.
// Without JavaScript or WebAuthn the section stays hidden and the password form does the job.
import { api } from "/static/kanvaro-api.js";
import { credentialJSON, requestOptions, sentence } from "/static/webauthn.js";

const BASE = "/api/v1/auth/webauthn";
const section = document.querySelector("[data-passkey-sign-in]");

if (section && window.PublicKeyCredential) {
  const slug = section.dataset.slug;
  const next = section.dataset.next || `/t/${slug}/`;
  const use = section.querySelector("#passkey-sign-in");
  const line = section.querySelector(".webauthn-status");
  const say = (text) => { line.textContent = text; };
  section.hidden = false;
  use.addEventListener("click", async () => {
    use.disabled = true;
    try {
      say("Follow your browser's prompt…");
      const options = await api(`${BASE}/passkey/options`, { method: "POST", body: { tenant: slug } });
      const credential = await navigator.credentials.get({ publicKey: requestOptions(options.publicKey) });
      await api(`${BASE}/passkey/verify`, {
        method: "POST",
        body: { sessionId: options.sessionId, credential: credentialJSON(credential), transport: "cookie" },
      });
      say("Signed in.");
      // The server-rendered value is a same-site path (routing.safe_next).
      window.location.assign(next.startsWith("/") && !next.startsWith("//") ? next : `/t/${slug}/`);
    } catch (error) {
      say(sentence(error));
    } finally {
      use.disabled = false;
    }
  });
}
