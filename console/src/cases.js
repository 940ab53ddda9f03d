// Open cases on the road (GET /v1/cases?status=open&road_id=...): listed,
// and drawn as square markers, unlike violations' red circles; a case's
// details (status, party, due time) and its history on click or Enter.
import { authorised, body, el, say, session } from "./api.js";
import { focusable, view } from "./road.js";

const L = window.L;
let markers = null;
let shown = "";
const byId = new Map();

const tell = (text, kind) => say("cases-message", text, kind);
const when = (t) => (t ? new Date(t).toLocaleString() : "none");

function icon(c) {
  return L.divIcon({
    className: "case-marker",
    html: `<span data-status="${c.status}">C</span>`,
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

/// Lists the road's open cases and draws them.
export async function listCases() {
  if (!session.token || !view.road) return;
  const r = await authorised(`/v1/cases?status=open&road_id=${encodeURIComponent(view.road)}`);
  if (!r.ok) {
    const p = await body(r);
    tell(`${r.status}: ${p.detail ?? "the cases cannot be read"}`, "error");
    return;
  }
  const { cases } = await r.json();
  tell(cases.length === 1 ? "1 open case" : `${cases.length} open cases`);
  // Redrawn only when something changed, so that a refresh does not close
  // the details someone is reading; an open one is reopened after.
  const now = JSON.stringify([view.road, cases.map((c) => [c.case_id, c.status, c.due_at, c.party_id])]);
  if (now === shown && markers && view.map.hasLayer(markers)) return;
  shown = now;
  const open = [...byId].find(([, m]) => m.isPopupOpen())?.[0];
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
  byId.get(open)?.openPopup();
}
