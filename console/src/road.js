// The chosen road on the map: its layout drawn from GET .../layout, its bays
// following the live stream (/v1/stream) without a reload, and the basemap
// beneath when the deployment names one (GET /console/config). The stream's
// `layout`, `violation` and `case` events are handed to whoever set the
// hooks on `view`.
import { el, escapeHtml, json, session } from "./api.js";

const L = window.L;
export const COLOURS = { free: "#2e9d46", occupied: "#d33b2c", unknown: "#9a9a9a" };

/// The road on the page. `revision` is the layout revision the page drew,
/// which a planner's publish sends as If-Match.
export const view = {
  road: null, revision: null, layout: null, map: null, drawn: null,
  layers: new Map(), items: new Map(), source: null, basemap: null,
  // Told of each violation, case and layout event on the stream, and of a
  // click on the map.
  onViolation: () => {}, onCase: () => {}, onLayout: () => {}, onPick: () => {},
  // Told when the stream fails (a token refused at reconnection among the
  // possible reasons: EventSource does not say which).
  onLost: () => {},
};

/// The map, once, with the basemap beneath if `config.tile_url` is set.
export function makeMap(config) {
  view.map = L.map("map", { zoomSnap: 0.25, attributionControl: !!config.tile_url, maxZoom: 22 });
  if (config.tile_url) {
    view.basemap = L.tileLayer(config.tile_url, {
      maxZoom: 22, maxNativeZoom: 19,
      attribution: escapeHtml(config.tile_attribution ?? ""),
    }).addTo(view.map);
  }
  view.map.on("click", (e) => view.onPick(e.latlng));
}

/// The road's feature whose id is `id` (its bay_id, barrier_id or road_id).
export function featureId(f) {
  const p = f.properties ?? {};
  return p.bay_id ?? p.barrier_id ?? p.road_id ?? f.id ?? null;
}

/// "庆丰路 · Qingfeng Road": both names, as the layout gives them.
export function roadName(layout, fallback) {
  const road = layout.features.find((f) => f.properties?.feature_type === "road");
  const names = [road?.properties.name, road?.properties.name_en].filter(Boolean);
  return names.join(" · ") || fallback;
}

/// A layout's style by feature type, bays in `fill`.
export function layoutStyle(f, fill = COLOURS.unknown) {
  switch (f.properties?.feature_type) {
    case "road": return { color: "#445", weight: 2, dashArray: "6 4" };
    case "barrier": return { color: "#6b4f2a", weight: 1, fillColor: "#6b4f2a", fillOpacity: 0.8 };
    default: return { color: "#333", weight: 1, fillColor: fill, fillOpacity: 0.85 };
  }
}

/// Makes a drawn feature reachable from the keyboard: focus, then Enter or
/// Space opens its popup (or tooltip when it has none).
export function focusable(layer, label, data = {}) {
  const apply = () => {
    const node = layer.getElement();
    if (!node) return;
    Object.assign(node.dataset, data);
    node.setAttribute("tabindex", "0");
    node.setAttribute("role", "button");
    node.setAttribute("aria-label", label);
    node.addEventListener("keydown", (e) => {
      if (e.key !== "Enter" && e.key !== " ") return;
      e.preventDefault();
      if (layer.getPopup()) layer.openPopup();
      else layer.openTooltip();
    });
  };
  layer.on("add", apply);
  if (layer.getElement()) apply();
}

function setLink(state, text) {
  const node = document.getElementById("link");
  node.dataset.state = state;
  node.textContent = text;
}

function showCounts(c) {
  document.getElementById("counts").textContent =
    `${c.occupied} occupied, ${c.free} free, ${c.unknown} unknown of ${c.bays} bays`;
  showRoadCounts(view.road, c);
}

/// The road list's entry for `roadId`: its names and live counts.
export function showRoadCounts(roadId, c) {
  for (const b of document.querySelectorAll("#roads button")) {
    if (b.dataset.road === roadId) b.textContent = `${b.dataset.name} — ${c.occupied}/${c.bays} occupied`;
  }
}

function showBay(b) {
  const layer = view.layers.get(b.bay_id);
  if (layer) {
    layer.setStyle({ fillColor: COLOURS[b.status] ?? COLOURS.unknown });
    const node = layer.getElement();
    if (node) {
      node.dataset.status = b.status;
      node.setAttribute("aria-label", `${b.bay_id}: ${b.status}`);
    }
    layer.setTooltipContent(`${b.bay_id}: ${b.status}${b.since ? ` since ${b.since}` : ""}`);
  }
  const item = view.items.get(b.bay_id);
  if (item) {
    item.dataset.status = b.status;
    item.textContent = `${b.bay_id}: ${b.status}`;
  }
}

/// A bay's popup: what the layout says of it, and its live status.
function bayDetails(p, status) {
  const rows = [
    ["bay", p.bay_id],
    ["status", status],
    ["kind", p.kind],
    ["limit", p.max_stay_minutes ? `${p.max_stay_minutes} min` : "none"],
    ["enforced", p.enforced_hours ?? "always"],
  ];
  return el("div", { className: "bay-details" }, ...rows.map(([k, v]) => el("div", {}, `${k}: ${v}`)));
}

/// Draws `roadId`'s current layout and listens to its bays.
export async function openRoad(roadId) {
  view.road = roadId;
  const layout = await json(`/v1/roads/${encodeURIComponent(roadId)}/layout`);
  view.layout = layout;
  view.revision = layout.revision;
  document.getElementById("road-title").textContent = roadName(layout, roadId);
  document.getElementById("revision").textContent = `· layout revision ${layout.revision}`;

  view.drawn?.remove();
  view.layers.clear();
  view.items.clear();
  const list = document.getElementById("bays");
  list.replaceChildren();
  view.drawn = L.geoJSON(layout, {
    style: (f) => layoutStyle(f),
    onEachFeature: (f, layer) => {
      if (f.properties.feature_type !== "bay") return;
      const id = f.properties.bay_id;
      view.layers.set(id, layer);
      layer.bindTooltip(`${id}: unknown`);
      layer.bindPopup(() => bayDetails(f.properties, layer.getElement()?.dataset.status ?? "unknown"));
      focusable(layer, `${id}: unknown`, { bay: id });
      const li = el("li", { dataset: { bay: id, status: "unknown" } }, `${id}: unknown`);
      view.items.set(id, li);
      list.append(li);
    },
  }).addTo(view.map);
  view.map.fitBounds(view.drawn.getBounds(), { padding: [10, 10] });
  listen(roadId);
}

/// (Re)opens the live stream of `roadId`, with the token if there is one.
export function listen(roadId = view.road) {
  if (!roadId) return;
  view.source?.close();
  setLink("connecting", "connecting…");
  // EventSource reconnects by itself; the page says when it is away.
  const token = session.token ? `&token=${encodeURIComponent(session.token)}` : "";
  const source = new EventSource(`/v1/stream?road=${encodeURIComponent(roadId)}${token}`);
  view.source = source;
  source.onopen = () => setLink("live", "live");
  source.onerror = () => {
    // Closed for good (an answer other than 200, such as a 401) or about to
    // retry by itself.
    if (source.readyState === EventSource.CLOSED) setLink("disconnected", "disconnected");
    else setLink("disconnected", "disconnected: reconnecting…");
    view.onLost(source);
  };
  source.addEventListener("bay", (e) => showBay(JSON.parse(e.data)));
  source.addEventListener("occupancy", (e) => showCounts(JSON.parse(e.data)));
  source.addEventListener("violation", (e) => view.onViolation(JSON.parse(e.data)));
  source.addEventListener("case", (e) => view.onCase(JSON.parse(e.data)));
  source.addEventListener("layout", (e) => view.onLayout(JSON.parse(e.data)));
}
