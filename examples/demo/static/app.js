"use strict";

const authErrors = {
  access_denied: "You declined the sign-in at your server.",
  expired: "The sign-in took too long or was already used. Please start again.",
  browser_mismatch: "The sign-in was finished in another browser than the one that started it. Please start again here.",
  issuer_mismatch: "Your server's answer did not match the server the sign-in started at.",
  account_mismatch: "The account that signed in is not the one that started the sign-in.",
  server_error: "Something went wrong at your server or ours. Please try again.",
};

function showError(text) {
  const el = document.getElementById("error");
  el.textContent = text;
  el.hidden = !text;
}

async function api(method, path, body) {
  const resp = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  let data = null;
  try { data = await resp.json(); } catch (_) { /* empty body */ }
  return { ok: resp.ok, status: resp.status, data };
}

async function finishSignIn(params) {
  const token = params.get("exchange_token");
  const code = params.get("auth_error");
  if (token || code) {
    // Take the one-time values out of the address bar and the history.
    history.replaceState(null, "", location.pathname);
  }
  if (code) {
    showError(authErrors[code] || "Sign-in failed.");
  }
  if (token) {
    const r = await api("POST", "/auth/exchange", { exchange_token: token });
    if (!r.ok) showError((r.data && r.data.detail) || "Sign-in failed.");
  }
}

async function render() {
  const r = await api("GET", "/auth/me");
  document.getElementById("signed-in").hidden = !r.ok;
  document.getElementById("signed-out").hidden = r.ok;
  if (!r.ok) return;
  const u = r.data;
  document.getElementById("who-handle").textContent = u.handle || u.did;
  document.getElementById("who-did").textContent = u.did;
  document.getElementById("who-kind").textContent = u.kind;
  document.getElementById("who-scopes").textContent = u.scopes.join(" ");
}

document.getElementById("logout").addEventListener("click", async () => {
  const r = await api("POST", "/auth/logout");
  if (!r.ok) showError((r.data && r.data.detail) || "Logout failed.");
  await render();
});

(async () => {
  await finishSignIn(new URLSearchParams(location.search));
  await render();
})();
