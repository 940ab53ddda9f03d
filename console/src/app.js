// The console page: the road list with live occupancy, and a map of the
// chosen road whose bays follow the live stream (/v1/stream) without a
// reload. Plain ES module; Leaflet is the one dependency (console/package.json).
import "/console/leaflet.js";

const L = window.L;
const COLOURS = { free: "#2e9d46", occupied: "#d33b2c", unknown: "#9a9a9a" };

const state = {
  road: null, map: null, layers: new Map(), items: new Map(), source: null,
  // The warden's token lives in this tab's session storage only.
  token: sessionStorage.getItem("kerbside-token"), from: null, markers: null,
};

function authorised(path, init = {}) {
  return fetch(path, { ...init, headers: { ...(init.headers ?? {}), Authorization: `Bearer ${state.token}` } });
}

function say(text, kind = "info") {
  const el = document.getElementById("warden-message");
  el.dataset.kind = kind;
  el.textContent = text;
}

/// The open violations of the road, nearest first from `state.from`.
async function listViolations() {
  if (!state.token || !state.road) return;
  const near = state.from ? `&near=${state.from.lng},${state.from.lat}` : "";
  const r = await authorised(`/v1/roads/${state.road}/violations?status=open${near}`);
  if (!r.ok) {
    const p = await r.json().catch(() => ({}));
    say(`${r.status}: ${p.detail ?? "the violations cannot be read"}`, "error");
    return;
  }
  const { violations } = await r.json();
  const list = document.getElementById("violations");
  list.replaceChildren();
  state.markers?.clearLayers();
  state.markers ??= L.layerGroup().addTo(state.map);
  for (const v of violations) {
    const li = document.createElement("li");
    li.dataset.violation = v.violation_id;
    li.dataset.status = v.status;
    const status = document.createElement("span");
    status.className = "status";
    status.textContent = v.status;
    const where = v.bay_id ?? "off-bay";
    const far = v.distance_m != null ? `, ${Math.round(v.distance_m)} m` : "";
    const text = document.createElement("span");
    text.textContent = `${v.kind} at ${where}${far}${v.plate ? `, ${v.plate}` : ""} (since ${v.started_at})`;
    const note = document.createElement("input");
    note.placeholder = "note";
    note.setAttribute("aria-label", `note for ${v.violation_id}`);
    li.append(text, " ", status, " ", note);
    for (const action of ["ticket", "dismiss"]) {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.action = action;
      b.textContent = action === "ticket" ? "Ticket" : "Dismiss";
      b.addEventListener("click", () => act(v.violation_id, action, note.value));
      li.append(" ", b);
    }
    list.append(li);
    if (v.position) {
      L.circleMarker([v.position.lat, v.position.lon], { radius: 7, color: "#a31d12", fillOpacity: 0.9 })
        .bindPopup(`${v.kind} at ${where}: ${v.status}`)
        .addTo(state.markers);
    }
  }
}

async function act(id, action, note) {
  const r = await authorised(`/v1/violations/${id}/${action}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(note ? { note } : {}),
  });
  const body = await r.json().catch(() => ({}));
  if (r.ok) {
    say(`${id}: ${body.status}`);
  } else if (r.status === 409) {
    say(`${id} was already handled by someone else: ${body.detail}`, "error");
  } else {
    say(`${r.status}: ${body.detail ?? "refused"}`, "error");
  }
  await listViolations();
}

document.getElementById("warden-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  state.token = document.getElementById("token").value.trim() || null;
  if (state.token) sessionStorage.setItem("kerbside-token", state.token);
  else sessionStorage.removeItem("kerbside-token");
  document.getElementById("warden").hidden = !state.token;
  if (state.road) listen(state.road);
  await listViolations();
});

async function json(path) {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

function setLink(s, text) {
  const el = document.getElementById("link");
  el.dataset.state = s;
  el.textContent = text;
}

function showCounts(c) {
  document.getElementById("counts").textContent =
    `${c.occupied} occupied, ${c.free} free, ${c.unknown} unknown of ${c.bays} bays`;
}

function showBay(b) {
  const layer = state.layers.get(b.bay_id);
  if (layer) {
    layer.setStyle({ fillColor: COLOURS[b.status] ?? COLOURS.unknown });
    const el = layer.getElement();
    if (el) {
      el.dataset.status = b.status;
      el.setAttribute("aria-label", `${b.bay_id}: ${b.status}`);
    }
    layer.setTooltipContent(`${b.bay_id}: ${b.status}${b.since ? ` since ${b.since}` : ""}`);
  }
  const item = state.items.get(b.bay_id);
  if (item) {
    item.dataset.status = b.status;
    item.textContent = `${b.bay_id}: ${b.status}`;
  }
}

/// A bay's popup: what the layout says of it, and its live status.
function bayDetails(p, status) {
  const div = document.createElement("div");
  div.className = "bay-details";
  const rows = [
    ["bay", p.bay_id],
    ["status", status],
    ["kind", p.kind],
    ["limit", p.max_stay_minutes ? `${p.max_stay_minutes} min` : "none"],
    ["enforced", p.enforced_hours ?? "always"],
  ];
  for (const [k, v] of rows) {
    const line = document.createElement("div");
    line.textContent = `${k}: ${v}`;
    div.append(line);
  }
  return div;
}

async function listRoads() {
  const { roads } = await json("/v1/roads");
  const ul = document.getElementById("roads");
  ul.replaceChildren();
  for (const r of roads) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.road = r.road_id;
    b.textContent = `${r.name} — ${r.occupied}/${r.bays} occupied`;
    b.addEventListener("click", () => openRoad(r.road_id));
    li.append(b);
    ul.append(li);
  }
  return roads;
}

async function openRoad(roadId) {
  state.road = roadId;
  for (const b of document.querySelectorAll("#roads button")) {
    b.setAttribute("aria-current", String(b.dataset.road === roadId));
  }
  const layout = await json(`/v1/roads/${roadId}/layout`);
  const road = layout.features.find((f) => f.properties.feature_type === "road");
  const names = [road?.properties.name, road?.properties.name_en].filter(Boolean);
  document.getElementById("road-title").textContent = names.join(" · ") || roadId;

  if (!state.map) {
    // No basemap: the layout is the map.
    state.map = L.map("map", { zoomSnap: 0.25, attributionControl: false });
  }
  state.map.eachLayer((l) => state.map.removeLayer(l));
  state.layers.clear();
  state.items.clear();
  const list = document.getElementById("bays");
  list.replaceChildren();
  const drawn = L.geoJSON(layout, {
    style: (f) => {
      switch (f.properties.feature_type) {
        case "road": return { color: "#445", weight: 2, dashArray: "6 4" };
        case "barrier": return { color: "#6b4f2a", weight: 1, fillColor: "#6b4f2a", fillOpacity: 0.8 };
        default: return { color: "#333", weight: 1, fillColor: COLOURS.unknown, fillOpacity: 0.85 };
      }
    },
    onEachFeature: (f, layer) => {
      if (f.properties.feature_type !== "bay") return;
      const id = f.properties.bay_id;
      state.layers.set(id, layer);
      layer.bindTooltip(`${id}: unknown`);
      // A bay's details on click, or Enter when it has the focus.
      layer.bindPopup(() => bayDetails(f.properties, layer.getElement()?.dataset.status ?? "unknown"));
      layer.on("add", () => {
        const el = layer.getElement();
        el.dataset.bay = id;
        el.setAttribute("tabindex", "0");
        el.setAttribute("role", "button");
        el.addEventListener("keydown", (e) => {
          if (e.key === "Enter" || e.key === " ") layer.openPopup();
        });
      });
      const li = document.createElement("li");
      li.dataset.bay = id;
      li.dataset.status = "unknown";
      li.textContent = `${id}: unknown`;
      state.items.set(id, li);
      list.append(li);
    },
  }).addTo(state.map);
  state.map.fitBounds(drawn.getBounds(), { padding: [10, 10] });
  state.markers = L.layerGroup().addTo(state.map);
  state.map.off("click");
  state.map.on("click", (e) => {
    state.from = e.latlng;
    document.getElementById("from").textContent = `${e.latlng.lat.toFixed(5)}, ${e.latlng.lng.toFixed(5)}`;
    listViolations();
  });
  document.getElementById("warden").hidden = !state.token;
  listen(roadId);
  await listViolations();
}

function listen(roadId) {
  state.source?.close();
  setLink("connecting", "connecting…");
  // EventSource reconnects by itself; the page says when it is away.
  const token = state.token ? `&token=${encodeURIComponent(state.token)}` : "";
  const source = new EventSource(`/v1/stream?road=${encodeURIComponent(roadId)}${token}`);
  state.source = source;
  source.onopen = () => setLink("live", "live");
  source.onerror = () => setLink("disconnected", "disconnected: reconnecting…");
  source.addEventListener("bay", (e) => showBay(JSON.parse(e.data)));
  source.addEventListener("occupancy", (e) => showCounts(JSON.parse(e.data)));
  // A violation filed anywhere joins the list; one handled elsewhere
  // shows its new status in place (acting on it then says so plainly).
  source.addEventListener("violation", (e) => {
    const v = JSON.parse(e.data);
    const li = document.querySelector(`#violations li[data-violation="${v.violation_id}"]`);
    if (li) {
      li.dataset.status = v.status;
      li.querySelector(".status").textContent = v.status;
    } else if (v.status === "open") {
      listViolations();
    }
  });
}

const roads = await listRoads();
if (roads.length > 0) await openRoad(roads[0].road_id);
