// What every part of the page shares: the token (kept in this tab's session
// storage only), requests with it, problem+json read plainly, and a small
// helper to build DOM nodes without writing HTML.

export const session = {
  token: sessionStorage.getItem("kerbside-token"),
  // Whose token it is, once GET /v1/auth/whoami has said: {name, role, expires_at}.
  who: null,
};

/// Sets or clears the tab's token.
export function useToken(token) {
  session.token = token || null;
  if (session.token) sessionStorage.setItem("kerbside-token", session.token);
  else sessionStorage.removeItem("kerbside-token");
}

/// `fetch` with the tab's token.
export function authorised(path, init = {}) {
  return fetch(path, {
    ...init,
    headers: { ...(init.headers ?? {}), Authorization: `Bearer ${session.token}` },
  });
}

/// A public JSON read; throws on a non-2xx answer.
export async function json(path) {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

/// The body of an answer as JSON, or `{}` when it has none.
export async function body(r) {
  return r.json().catch(() => ({}));
}

/// `el("li", {dataset: {bay: "X"}, className: "y"}, "text", child)`.
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  const { dataset, attrs, ...rest } = props;
  Object.assign(node, rest);
  Object.assign(node.dataset, dataset ?? {});
  for (const [k, v] of Object.entries(attrs ?? {})) node.setAttribute(k, v);
  node.append(...children.filter((c) => c != null));
  return node;
}

/// Writes `text` into the status line `id`; `kind` "error" makes it stand out.
export function say(id, text, kind = "info") {
  const node = document.getElementById(id);
  node.dataset.kind = kind;
  node.textContent = text;
}

/// Escapes text for the few Leaflet calls that take HTML (attribution).
export function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
