// The warden's view: the road's open violations, nearest first from a point
// clicked on the map, ticketed or dismissed from the list; a 409 (someone
// else was first) said plainly.
import { authorised, body, el, say, session } from "./api.js";
import { focusable, view } from "./road.js";

const L = window.L;
let markers = null;
let from = null;

const tell = (text, kind) => say("warden-message", text, kind);

/// Lists the road's open violations and draws them as red circles.
export async function listViolations() {
  if (!session.token || !view.road) return;
  const near = from ? `&near=${from.lng},${from.lat}` : "";
  const r = await authorised(`/v1/roads/${encodeURIComponent(view.road)}/violations?status=open${near}`);
  if (!r.ok) {
    const p = await body(r);
    tell(`${r.status}: ${p.detail ?? "the violations cannot be read"}`, "error");
    return;
  }
  const { violations } = await r.json();
  const list = document.getElementById("violations");
  list.replaceChildren();
  markers?.remove();
  markers = L.layerGroup().addTo(view.map);
  for (const v of violations) {
    const where = v.bay_id ?? "off-bay";
    const far = v.distance_m != null ? `, ${Math.round(v.distance_m)} m` : "";
    const note = el("input", { placeholder: "note", attrs: { "aria-label": `note for ${v.violation_id}` } });
    const li = el("li", { dataset: { violation: v.violation_id, status: v.status } },
      el("span", {}, `${v.kind} at ${where}${far}${v.plate ? `, ${v.plate}` : ""} (since ${v.started_at})`),
      " ", el("span", { className: "status" }, v.status), " ", note);
    for (const action of ["ticket", "dismiss"]) {
      const b = el("button", { type: "button", dataset: { action } }, action === "ticket" ? "Ticket" : "Dismiss");
      b.addEventListener("click", () => act(v.violation_id, action, note.value));
      li.append(" ", b);
    }
    list.append(li);
    if (v.position) {
      const m = L.circleMarker([v.position.lat, v.position.lon], { radius: 7, color: "#a31d12", fillOpacity: 0.9 })
        .bindPopup(`violation: ${v.kind} at ${where}, ${v.status}`)
        .addTo(markers);
      focusable(m, `violation ${v.kind} at ${where}: ${v.status}`, { violation: v.violation_id });
    }
  }
}

async function act(id, action, note) {
  const r = await authorised(`/v1/violations/${id}/${action}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(note ? { note } : {}),
  });
  const b = await body(r);
  if (r.ok) tell(`${id}: ${b.status}`);
  else if (r.status === 409) tell(`${id} was already handled by someone else: ${b.detail}`, "error");
  else tell(`${r.status}: ${b.detail ?? "refused"}`, "error");
  await listViolations();
}

/// Nearest first from `latlng` from now on.
export function pick(latlng) {
  from = latlng;
  document.getElementById("from").textContent = `${latlng.lat.toFixed(5)}, ${latlng.lng.toFixed(5)}`;
  listViolations();
}

/// A violation from the stream: a new one joins the list; one handled
/// elsewhere shows its new status in place (acting on it then says so).
export function onViolation(v) {
  const li = document.querySelector(`#violations li[data-violation="${v.violation_id}"]`);
  if (li) {
    li.dataset.status = v.status;
    li.querySelector(".status").textContent = v.status;
  } else if (v.status === "open") {
    listViolations();
  }
}

/// Forgets the list and its markers (signed out).
export function clearViolations() {
  markers?.remove();
  markers = null;
  document.getElementById("violations").replaceChildren();
}
