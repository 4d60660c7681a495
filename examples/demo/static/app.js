"use strict";

const authErrors = {
  access_denied: "You declined at your server.",
  expired: "The sign-in took too long or was already used. Please start again.",
  browser_mismatch: "The sign-in was finished in another browser than the one that started it. Please start again here.",
  issuer_mismatch: "Your server's answer did not match the server the sign-in started at.",
  account_mismatch: "A different account signed in than the one that started this.",
  server_error: "Something went wrong at your server or ours. Please try again.",
};

const $ = (id) => document.getElementById(id);

function show(id, text) {
  const el = $(id);
  el.textContent = text || "";
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
  try { data = await resp.json(); } catch (_) { /* no body */ }
  return { ok: resp.ok, status: resp.status, data };
}

function detail(r, fallback) {
  return (r.data && r.data.detail) || fallback;
}

function clearMessages() {
  show("notice", "");
  show("error", "");
}

// startFlow asks the app for an authorization URL and goes there.
async function startFlow(path, body) {
  show("error", "");
  const r = await api("POST", path, body);
  if (!r.ok) {
    show("error", detail(r, "Could not start."));
    return;
  }
  location.assign(r.data.auth_url);
}

// finishFlow handles the parameters the callback lands with, then takes the
// one-time values out of the address bar and the history.
async function finishFlow(params) {
  if ([...params.keys()].length > 0) history.replaceState(null, "", location.pathname);
  const code = params.get("auth_error");
  if (code) show("error", authErrors[code] || "Sign-in failed.");
  if (params.get("scope_upgrade_error") === "refused") show("error", "The extra permission was not granted; nothing changed.");
  if (params.get("scope_upgraded") === "true") show("notice", "Permission granted.");
  const token = params.get("exchange_token");
  if (!token) return;
  const r = await api("POST", "/auth/exchange", { exchange_token: token });
  if (!r.ok) {
    show("error", detail(r, "Sign-in failed."));
    return;
  }
  if (params.get("dev_token") === "true") {
    $("new-token-value").textContent = r.data.session_id;
    $("new-token").hidden = false;
    show("notice", "Developer token created.");
  } else if (params.get("account_added") === "true") {
    show("notice", "Account added.");
  }
}

function item(text, ...buttons) {
  const li = document.createElement("li");
  const span = document.createElement("span");
  span.className = "grow";
  span.textContent = text;
  li.append(span, ...buttons);
  return li;
}

function button(label, onClick, cls) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.className = "small " + (cls || "");
  b.addEventListener("click", onClick);
  return b;
}

async function renderSignedOut() {
  const opts = await api("GET", "/auth/pds-options");
  if (opts.ok && opts.data.enabled && opts.data.options.length > 0) {
    const list = $("pds-options");
    list.replaceChildren(...opts.data.options.map((o) =>
      item(o.name + (o.recommended ? " (recommended)" : "") + (o.description ? ": " + o.description : ""),
        button("Create account", () => location.assign("/auth/start?pds_url=" + encodeURIComponent(o.url))))));
    $("create").hidden = false;
  }
  const accts = await api("GET", "/demo/accounts");
  if (accts.ok && accts.data.length > 0) {
    $("account-list").replaceChildren(...accts.data.map((a) =>
      item(a.handle + "  password: " + a.password,
        button("Sign in", () => location.assign("/auth/start?handle=" + encodeURIComponent(a.handle))))));
    $("accounts").hidden = false;
  }
}

async function renderSignedIn(u) {
  $("who-handle").textContent = u.handle || u.did;
  $("who-did").textContent = u.did;
  $("who-kind").textContent = u.kind;
  $("who-scopes").textContent = u.scopes.join(" ");
  $("upgrade").hidden = u.scopes.includes("transition:email");

  const linked = u.linked_accounts.length > 0 ? u.linked_accounts : [{ did: u.did, handle: u.handle }];
  $("linked").replaceChildren(...linked.map((a) => {
    if (a.did === u.did) {
      const li = item(a.handle || a.did);
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = "active";
      li.append(tag);
      return li;
    }
    return item(a.handle || a.did,
      button("Switch", async () => {
        clearMessages();
        const r = await api("POST", "/auth/switch-account", { target_did: a.did });
        if (!r.ok) show("error", detail(r, "Could not switch."));
        await render();
      }),
      button("Log out and switch", async () => {
        const r = await api("POST", "/auth/logout?switch_to=" + encodeURIComponent(a.did));
        if (!r.ok) show("error", detail(r, "Could not log out."));
        await render();
      }, "secondary"));
  }));

  const tokens = await api("GET", "/auth/developer-tokens");
  const list = tokens.ok ? tokens.data.tokens : [];
  $("tokens").replaceChildren(...list.map((t) =>
    item((t.name || "unnamed") + "  " + t.session_id + "…  expires " + new Date(t.expires_at).toLocaleDateString(),
      button("Revoke", async () => {
        clearMessages();
        const r = await api("DELETE", "/auth/developer-tokens/" + encodeURIComponent(t.session_id));
        if (!r.ok) show("error", detail(r, "Could not revoke."));
        $("new-token").hidden = true;
        await render();
      }, "secondary"))));
}

async function render() {
  const r = await api("GET", "/auth/me");
  $("signed-in").hidden = !r.ok;
  $("signed-out").hidden = r.ok;
  if (r.ok) await renderSignedIn(r.data);
  else await renderSignedOut();
}

$("add-account").addEventListener("submit", (e) => {
  e.preventDefault();
  startFlow("/auth/add-account/start", { handle: $("add-handle").value });
});

$("dev-token").addEventListener("submit", (e) => {
  e.preventDefault();
  const body = { name: $("token-name").value };
  if ($("token-days").value !== "") body.expires_in_days = Number($("token-days").value);
  startFlow("/auth/developer-token/start", body);
});

$("copy-token").addEventListener("click", async () => {
  await navigator.clipboard.writeText($("new-token-value").textContent);
  $("copy-token").textContent = "Copied";
});

$("pds-call").addEventListener("click", async () => {
  clearMessages();
  const r = await api("GET", "/api/pds-session");
  const out = $("pds-result");
  out.textContent = r.ok ? JSON.stringify(r.data, null, 2) : "";
  out.hidden = !r.ok;
  if (!r.ok) {
    show("error", r.status === 401 ? "Your session has ended; please sign in again." : detail(r, "The PDS call failed."));
    if (r.status === 401) await render();
  }
});

$("upgrade").addEventListener("click", () => startFlow("/auth/scope-upgrade/start", { scopes: ["transition:email"] }));

$("logout").addEventListener("click", async () => {
  const r = await api("POST", "/auth/logout");
  if (!r.ok) show("error", detail(r, "Logout failed."));
  $("new-token").hidden = true;
  await render();
});

$("logout-all").addEventListener("click", async () => {
  const r = await api("POST", "/auth/logout-all");
  if (!r.ok) show("error", detail(r, "Logout failed."));
  $("new-token").hidden = true;
  await render();
});

(async () => {
  await finishFlow(new URLSearchParams(location.search));
  await render();
})();
