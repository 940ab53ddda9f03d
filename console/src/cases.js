// Open cases on the road: read once (GET /v1/cases?status=open&road_id=...),
// then kept current from the live stream's `case` events (opened, status
// changed, resolved); listed, and drawn as square markers, unlike
// violations' red circles; a case's details (status, party, due time) and
// its history on click or Enter. Notes are the public's plain text: only
// ever set as text, never as HTML.
import { authorised, body, el, escapeHtml, say, session } from "./api.js";
import { focusable, view } from "./road.js";

const L = window.L;
let markers = null;
let shown = "";
const byId = new Map();
/// The road's open cases by id, as last read or told.
const open = new Map();

const tell = (text, kind) => say("cases-message", text, kind);
const when = (t) => (t ? new Date(t).toLocaleString() : "none");

function icon(c) {
  return L.divIcon({
    className: "case-marker",
    html: `<span data-status="${escapeHtml(c.status)}">C</span>`,
    iconSize: [22, 22],
    // Up and to the right of its point, so that a violation's circle at the
    // same place stays visible.
    iconAnchor: [-4, 26],
    popupAnchor: [11, -26],
  });
}

function details(c, marker) {
  const rows = [
    ["case", c.case_id],
    ["kind", c.kind],
    ["status", c.status],
    ["party", c.party_id ?? "none answers for this place"],
    ["opened", when(c.opened_at)],
    ["due", when(c.due_at)],
    ["source", c.source],
    ["note", c.note ?? ""],
  ];
  const history = el("ol", { className: "case-history" });
  const show = el("button", { type: "button", className: "history-link" }, "History");
  show.addEventListener("click", async () => {
    const r = await authorised(`/v1/cases/${encodeURIComponent(c.case_id)}`);
    const d = await body(r);
    if (!r.ok) {
      history.replaceChildren(el("li", {}, `${r.status}: ${d.detail ?? "the history cannot be read"}`));
      return;
    }
    history.replaceChildren(...d.history.map((s) =>
      el("li", {}, `${when(s.at)}: ${s.action} → ${s.status}${s.actor ? ` by ${s.actor}` : ""}${s.note ? ` (${s.note})` : ""}`)));
    marker.getPopup()?.update();
  });
  return el("div", { className: "case-details", dataset: { case: c.case_id } },
    ...rows.map(([k, v]) => el("div", {}, `${k}: ${v}`)), show, history);
}

/// Reads the road's open cases and draws them.
export async function listCases() {
  if (!session.token || !view.road) return;
  const road = view.road;
  const r = await authorised(`/v1/cases?status=open&road_id=${encodeURIComponent(road)}`);
  if (!r.ok) {
    const p = await body(r);
    tell(`${r.status}: ${p.detail ?? "the cases cannot be read"}`, "error");
    return;
  }
  const { cases } = await r.json();
  if (road !== view.road) return;
  open.clear();
  for (const c of cases) open.set(c.case_id, c);
  draw();
}

/// A case from the stream: a new or changed one is drawn as it now is, a
/// resolved one leaves the map.
export function onCase(c) {
  if (!session.token || c.road_id !== view.road) return;
  if (c.status === "resolved") open.delete(c.case_id);
  else open.set(c.case_id, c);
  draw();
}

/// Forgets the last road's cases.
export function clearCases() {
  open.clear();
  draw();
}

function draw() {
  // Newest first, as GET /v1/cases lists them.
  const cases = [...open.values()].sort((a, b) => (a.opened_at < b.opened_at ? 1 : -1));
  if (session.token) tell(cases.length === 1 ? "1 open case" : `${cases.length} open cases`);
  // Redrawn only when something changed, so that a refresh does not close
  // the details someone is reading; an open one is reopened after.
  const now = JSON.stringify([view.road, cases.map((c) => [c.case_id, c.status, c.due_at, c.party_id])]);
  if (now === shown && markers && view.map.hasLayer(markers)) return;
  shown = now;
  const reading = [...byId].find(([, m]) => m.isPopupOpen())?.[0];
  const list = document.getElementById("cases");
  list.replaceChildren();
  markers?.remove();
  markers = L.layerGroup().addTo(view.map);
  byId.clear();
  for (const c of cases) {
    const label = `case: ${c.kind}, ${c.status}${c.due_at ? `, due ${when(c.due_at)}` : ""}`;
    const li = el("li", { dataset: { case: c.case_id, status: c.status } }, label);
    if (c.position) {
      const m = L.marker([c.position.lat, c.position.lon], { icon: icon(c), title: label, keyboard: false });
      m.bindPopup(details(c, m), { maxWidth: 360 }).addTo(markers);
      focusable(m, label, { case: c.case_id, status: c.status });
      byId.set(c.case_id, m);
      const b = el("button", { type: "button" }, "Show");
      b.addEventListener("click", () => {
        view.map.panTo(m.getLatLng());
        m.openPopup();
      });
      li.append(" ", b);
    }
    list.append(li);
  }
  byId.get(reading)?.openPopup();
}
