// Follows the compliance reports still being generated on the compliance page. Each unfinished
// row carries data-report="<id>"; its progress comes from the JSON API
// (GET /api/v1/compliance/reports/{id}, the session cookie) every two seconds. The bar and the
// step name are updated in place; once every followed report is finished the page is loaded
// again (without its notice), which shows its status and downloads. Without this module, the
// row's refresh link does.
const rows = new Map();
document.querySelectorAll("[data-report]").forEach((row) => rows.set(row.dataset.report, row));

const EVERY_MS = 2000;

async function look() {
  for (const [id, row] of rows) {
    let report;
    try {
      const answer = await fetch(`/api/v1/compliance/reports/${encodeURIComponent(id)}`, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (!answer.ok) continue;
      report = await answer.json();
    } catch {
      continue; // the server is away for a moment: look again next time
    }
    if (report.status === "completed" || report.status === "failed") {
      rows.delete(id);
      continue;
    }
    const bar = row.querySelector("progress");
    if (bar) {
      bar.max = report.progress.total || 1;
      bar.value = report.progress.done;
      bar.textContent = `${report.progress.done} of ${report.progress.total}`;
    }
    const step = row.querySelector("[data-step]");
    if (step) step.textContent = report.progress.step || "";
  }
  if (rows.size === 0) {
    // Loaded again without the "asked for" notice, which is no longer true.
    const url = new URL(window.location.href);
    url.searchParams.delete("notice");
    url.hash = "reports";
    window.location.replace(url.toString());
    return;
  }
  window.setTimeout(look, EVERY_MS);
}

if (rows.size > 0) window.setTimeout(look, EVERY_MS);
