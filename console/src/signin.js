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

/// Asks whose `token` is; keeps it when valid. True when signed in with it,
/// false when it was refused (and is forgotten), null when kerbside could
/// not be asked (nothing changes).
export async function signIn(token) {
  if (!token) {
    refused("the token is empty");
    return false;
  }
  let r;
  try {
    r = await fetch("/v1/auth/whoami", { headers: { Authorization: `Bearer ${token}` } });
  } catch {
    tell("The token cannot be checked now: kerbside does not answer.", "error");
    return null;
  }
  const b = await body(r);
  if (r.status === 401) {
    refused(b.detail ?? "the token was refused");
    return false;
  }
  if (!r.ok) {
    tell(`The token cannot be checked now: ${r.status}: ${b.detail ?? "try again"}.`, "error");
    return null;
  }
  useToken(token);
  session.who = b;
  const until = b.expires_at ? `; the token expires ${new Date(b.expires_at).toLocaleString()}` : "";
  tell(`signed in as ${b.name} (${b.role})${until}`);
  showSections();
  return true;
}

function refused(why) {
  useToken(null);
  session.who = null;
  tell(`Not signed in: ${why}. Ask for a new token, or check it was copied whole.`, "error");
  showSections();
}

/// Forgets the token.
export function signOut() {
  useToken(null);
  session.who = null;
  tell("signed out");
  showSections();
}
