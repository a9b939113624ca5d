// Reset and invitation pages: the link's secret is in the address's fragment (#token=...),
// which no server ever receives. Copy it into the form's hidden field, then drop it from the
// address bar and the history. The plain form posts it with the new password.
const form = document.querySelector("[data-token-form]");
if (form) {
  const field = form.querySelector("input[name=token]");
  const token = new URLSearchParams(window.location.hash.slice(1)).get("token");
  if (token) {
    field.value = token;
    history.replaceState(null, "", window.location.pathname);
  }
  if (!field.value) {
    form.hidden = true;
    const missing = document.getElementById("token-missing");
    if (missing) missing.hidden = false;
  }
}
