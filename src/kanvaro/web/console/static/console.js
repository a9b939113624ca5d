// The console's shared behaviour. Every page works without it; this only adds comfort:
//  - forms with data-confirm="..." ask before they are sent (e.g. revoking a session);
//  - elements with data-poll="<url>" show the progress of long work (key rotation, a report,
//    an export): the JSON at that URL is read every two seconds, and data-value/data-max name
//    its fields for the <progress> inside; data-done names a field that ends the polling.
const csrf = () => {
  const m = document.cookie.match(/(?:^|; )__Host-kanvaro_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
};

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});

const field = (data, path) => path.split(".").reduce((v, k) => (v == null ? v : v[k]), data);

async function poll(el) {
  const url = el.getAttribute("data-poll");
  const bar = el.querySelector("progress");
  const text = el.querySelector("[data-text]");
  const step = async () => {
    let data;
    try {
      const answer = await fetch(url, { credentials: "same-origin", headers: { "X-CSRF-Token": csrf() } });
      if (!answer.ok) throw new Error(String(answer.status));
      data = await answer.json();
    } catch (err) {
      if (text) text.textContent = "Progress unavailable (" + err.message + "); reload the page to retry.";
      return;
    }
    const value = Number(field(data, el.getAttribute("data-value") || "done") || 0);
    const max = Number(field(data, el.getAttribute("data-max") || "total") || 0);
    if (bar && max > 0) { bar.max = max; bar.value = value; }
    if (text) text.textContent = max > 0 ? `${value} of ${max}` : String(field(data, "status") || "");
    const doneField = el.getAttribute("data-done");
    const done = doneField ? Boolean(field(data, doneField)) : max > 0 && value >= max;
    if (!done) setTimeout(step, 2000);
    else el.dispatchEvent(new CustomEvent("kanvaro:done", { bubbles: true, detail: data }));
  };
  step();
}

document.querySelectorAll("[data-poll]").forEach(poll);
export { csrf };
