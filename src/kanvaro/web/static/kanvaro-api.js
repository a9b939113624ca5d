// The JSON API as the browser pages use it: the cookie session of a browser (the tokens are
// HttpOnly cookies this script never sees), the CSRF token read from its readable cookie on
// every unsafe request, and problem+json answers turned into one sentence for the page.
"use strict";

const CSRF_COOKIE = "__Host-kanvaro_csrf=";
const SAFE_METHODS = new Set(["GET", "HEAD"]);

export function csrfToken() {
  const found = document.cookie.split("; ").find((c) => c.startsWith(CSRF_COOKIE));
  return found ? found.slice(CSRF_COOKIE.length) : null;
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problemSentence(problem));
    this.status = status;
    this.problem = problem || {};
  }

  // The problem type's last segment ("csrf", "reauth-required"), or "" when there is none.
  get kind() {
    const type = this.problem.type || "";
    return type.slice(type.lastIndexOf("/") + 1);
  }

  // The camelCase fields the server named as wrong.
  get fields() {
    return (this.problem.errors || []).map((e) => e.field);
  }
}

function problemSentence(problem) {
  if (!problem) return "The server could not answer. Try again.";
  const first = (problem.errors || [])[0];
  return problem.detail || (first && first.message) || problem.title || "The request failed.";
}

// Calls the API; resolves to the JSON body (null for an empty one), rejects with ApiError.
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json, application/problem+json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (!SAFE_METHODS.has(method)) {
    const token = csrfToken();
    if (token) headers["X-CSRF-Token"] = token;
  }
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch (_) {
    throw new ApiError(0, null); // offline or refused: nothing more is known
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (_) {
      data = null;
    }
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// A same-origin path to go to after signing in; anything else (another site, "//host",
// "/\host", a scheme) falls back to `fallback`, so a crafted link cannot send the user away.
export function safeNextPath(candidate, fallback) {
  if (!candidate || !candidate.startsWith("/") || /^\/[\\/]/.test(candidate)) return fallback;
  try {
    const url = new URL(candidate, window.location.origin);
    if (url.origin !== window.location.origin) return fallback;
    return url.pathname + url.search + url.hash;
  } catch (_) {
    return fallback;
  }
}

export function show(element, visible) {
  element.hidden = !visible;
}
