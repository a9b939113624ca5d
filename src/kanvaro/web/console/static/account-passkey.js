// Security page: "Add a security key or passkey". webauthn.js's registration ceremony through
// the API's routes with the cookie session (POST /api/v1/auth/webauthn/register/options, then
// /verify with X-CSRF-Token); then the page is loaded again to list the new method.
import { api } from "/static/kanvaro-api.js";
import { creationOptions, credentialJSON, sentence } from "/static/webauthn.js";

const BASE = "/api/v1/auth/webauthn";
const section = document.querySelector("[data-passkey-register]");

if (section) {
  const controls = section.querySelector("[data-when-script]");
  const add = section.querySelector("#passkey-register");
  const name = section.querySelector("#passkey-name");
  const line = section.querySelector(".webauthn-status");
  const say = (text) => { line.textContent = text; };
  controls.hidden = false;
  if (!window.PublicKeyCredential) {
    add.disabled = true;
    say("This browser cannot use security keys or passkeys.");
  }
  add.addEventListener("click", async () => {
    add.disabled = true;
    try {
      say("Follow your browser's prompt…");
      const options = await api(`${BASE}/register/options`, { method: "POST" });
      const credential = await navigator.credentials.create({ publicKey: creationOptions(options.publicKey) });
      const body = { challengeId: options.challengeId, credential: credentialJSON(credential) };
      if (name.value.trim()) body.name = name.value.trim();
      await api(`${BASE}/register/verify`, { method: "POST", body });
      say("Added.");
      window.location.assign(`/t/${section.dataset.slug}/account/security?notice=passkey-added`);
    } catch (error) {
      if (error && error.kind === "reauth-required") {
        window.location.assign(`/t/${section.dataset.slug}/account/security?reauth=1#reauth`);
        return;
      }
      say(sentence(error));
    } finally {
      add.disabled = false;
    }
  });
}
