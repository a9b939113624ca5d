// Accepts an invitation: the token comes from the URL fragment (never sent to a server),
// the password from the form; both go to POST /api/v1/auth/invitations/accept as JSON.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("accept");
  const message = document.getElementById("message");
  const token = new URLSearchParams(window.location.hash.slice(1)).get("token");
  const say = (text) => { message.textContent = text; };

  if (!token) {
    say("This link holds no invitation. Open the link from your invitation email.");
    return;
  }
  // Drop the token from the address bar and the history once it has been read.
  history.replaceState(null, "", window.location.pathname);
  form.hidden = false;

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const password = form.elements.password.value;
    if (password !== form.elements.confirm.value) {
      say("The two passwords differ.");
      return;
    }
    say("Activating…");
    const response = await fetch("/api/v1/auth/invitations/accept", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/problem+json" },
      body: JSON.stringify({ token, password }),
      credentials: "omit",
    });
    if (response.status === 204) {
      form.hidden = true;
      say("Your account is active. You can now sign in with your email and this password.");
      return;
    }
    let detail = "The invitation could not be accepted.";
    try {
      const problem = await response.json();
      const first = (problem.errors || [])[0];
      detail = (first && first.message) || problem.detail || detail;
    } catch (_) { /* not JSON: keep the generic sentence */ }
    say(detail);
  });
});
