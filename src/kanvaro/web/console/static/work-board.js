// The task board's drag-and-drop. The board works without it: every card has a form (its new
// status, the hidden version it was drawn from, a Move button). This adds dragging a card to
// another column, which sends the same change to the JSON API: PATCH /api/v1/tasks/{id} with
// If-Match naming the card's version and the session's CSRF token. A card someone else changed
// meanwhile is refused (412); the card is then redrawn from the current task and the board
// says that nothing was changed.
import { csrf } from "/static/console/console.js";

const board = document.querySelector("[data-board]");

const STALE =
  "This card was changed by someone else since the board was loaded, so it was not moved. " +
  "It now shows the current state; move it again if you still want to.";

function say(text) {
  const box = document.getElementById("board-message");
  if (!box) return;
  box.textContent = text;
  box.hidden = !text;
}

function column(status) {
  return board.querySelector(`section[data-status="${CSS.escape(status)}"]`);
}

function recount() {
  board.querySelectorAll("section[data-status]").forEach((section) => {
    const count = section.querySelector("[data-count]");
    if (count) count.textContent = String(section.querySelectorAll("[data-task]").length);
  });
}

// Put the card where the task now is, with the version it now has.
function redraw(card, task) {
  card.dataset.version = String(task.version);
  card.dataset.status = task.status;
  const version = card.querySelector('input[name="version"]');
  if (version) version.value = String(task.version);
  const select = card.querySelector('select[name="status"]');
  if (select) select.value = task.status;
  const target = column(task.status);
  if (target) target.querySelector("[data-cards]").appendChild(card);
  recount();
}

async function reload(card) {
  const answer = await fetch(`/api/v1/tasks/${card.dataset.task}`, {
    credentials: "same-origin",
  });
  if (answer.status === 404) {
    card.remove();
    recount();
    return;
  }
  if (answer.ok) redraw(card, await answer.json());
}

async function move(card, status) {
  if (card.dataset.status === status) return;
  card.classList.add("moving");
  try {
    const answer = await fetch(`/api/v1/tasks/${card.dataset.task}`, {
      method: "PATCH",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "If-Match": `"v${card.dataset.version}"`,
        "X-CSRF-Token": csrf(),
      },
      body: JSON.stringify({ status }),
    });
    if (answer.ok) {
      redraw(card, await answer.json());
      say("");
    } else if (answer.status === 412 || answer.status === 428) {
      say(STALE);
      await reload(card);
    } else {
      let detail = `The card could not be moved (${answer.status}).`;
      try {
        const problem = await answer.json();
        if (problem && typeof problem.detail === "string") detail = problem.detail;
      } catch (_) {
        // not a problem document: keep the status line
      }
      say(detail);
    }
  } catch (err) {
    say("The card could not be moved: the server did not answer. Try the Move button.");
  } finally {
    card.classList.remove("moving");
  }
}

if (board) {
  const movable = board.querySelectorAll("[data-task] form.move");
  if (movable.length) {
    const hint = document.querySelector("[data-drag-hint]");
    if (hint) hint.hidden = false;
  }
  movable.forEach((form) => {
    const card = form.closest("[data-task]");
    card.setAttribute("draggable", "true");
    card.addEventListener("dragstart", (event) => {
      event.dataTransfer.setData("text/plain", card.dataset.task);
      event.dataTransfer.effectAllowed = "move";
      card.classList.add("dragging");
    });
    card.addEventListener("dragend", () => card.classList.remove("dragging"));
  });
  board.querySelectorAll("section[data-status]").forEach((section) => {
    section.addEventListener("dragover", (event) => {
      event.preventDefault();
      event.dataTransfer.dropEffect = "move";
      section.classList.add("drop-target");
    });
    section.addEventListener("dragleave", (event) => {
      if (!section.contains(event.relatedTarget)) section.classList.remove("drop-target");
    });
    section.addEventListener("drop", (event) => {
      event.preventDefault();
      section.classList.remove("drop-target");
      const id = event.dataTransfer.getData("text/plain");
      const card = id && board.querySelector(`[data-task="${CSS.escape(id)}"]`);
      if (card) move(card, section.dataset.status);
    });
  });
}
