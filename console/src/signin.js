// Signing in: the token typed in is asked about (GET /v1/auth/whoami)
// before it is kept; the page then says whose it is and shows only what
// that role may do: the warden's actions to wardens and admins, the
// planner's view to planners and admins, the road's cases to all three.
// A wrong or expired token is said plainly, and nothing is shown for it.
import { body, say, session, useToken } from "./api.js";

const SECTIONS = {
  warden: ["warden", "admin"],
  "cases-section": ["warden", "planner", "admin"],
  planner: ["planner", "admin"],
};

const tell = (text, kind) => say("signed-in", text, kind);

/// Shows each role's sections to the signed-in role, hides the rest.
export function showSections() {
  const role = session.who?.role;
  for (const [id, roles] of Object.entries(SECTIONS)) {
    document.getElementById(id).hidden = !roles.includes(role);
  }
  document.getElementById("sign-out").hidden = !session.who;
}

/// Asks whose `token` is; keeps it when valid. True when signed in.
export async function signIn(token) {
  session.who = null;
  if (!token) {
    useToken(null);
    tell("Not signed in: the token is empty.", "error");
    showSections();
    return false;
  }
  const r = await fetch("/v1/auth/whoami", { headers: { Authorization: `Bearer ${token}` } });
  const b = await body(r);
  if (!r.ok) {
    useToken(null);
    const why = r.status === 401 ? (b.detail ?? "the token was refused") : `${r.status}: ${b.detail ?? "cannot sign in now"}`;
    tell(`Not signed in: ${why}. Ask for a new token, or check it was copied whole.`, "error");
    showSections();
    return false;
  }
  useToken(token);
  session.who = b;
  const until = b.expires_at ? `; the token expires ${new Date(b.expires_at).toLocaleString()}` : "";
  tell(`signed in as ${b.name} (${b.role})${until}`);
  showSections();
  return true;
}

/// Forgets the token.
export function signOut() {
  useToken(null);
  session.who = null;
  tell("signed out");
  showSections();
}
