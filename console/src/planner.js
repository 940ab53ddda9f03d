// The planner's view: a GeoJSON layout chosen or dropped on the page is
// sent as a dry run (PUT .../layout?dry_run=true); its diff is drawn over
// the current layout, or each validation error at its feature; publishing
// sends If-Match with the revision the page drew, and a 412 (someone
// published meanwhile) is explained, as is a new revision the live stream
// tells of while a checked layout waits to be published (it was checked
// against an older one). Past revisions can be drawn too.
import { authorised, body, el, say, session } from "./api.js";
import { featureId, focusable, openRoad, view } from "./road.js";

const L = window.L;

/// Styles of the diff and of problems, each also named in the legend's text.
export const STYLES = {
  added: { color: "#1f5fbf", weight: 3, fillColor: "#1f5fbf", fillOpacity: 0.45 },
  removed: { color: "#7a1010", weight: 2, dashArray: "4 3", fillOpacity: 0.05 },
  changed: { color: "#d98a00", weight: 3, dashArray: "1 4", fillColor: "#d98a00", fillOpacity: 0.45 },
  error: { color: "#c0128a", weight: 4, fillColor: "#c0128a", fillOpacity: 0.5 },
  revision: { color: "#5b3a9e", weight: 2, dashArray: "8 4", fillOpacity: 0 },
};

// `against`: the revision the draft was checked against (If-Match when it is
// published); `publishing`: this page's own publish is under way.
const draft = {
  text: null, name: null, features: [], overlay: null, revisionOverlay: null,
  against: null, publishing: false,
};
const tell = (text, kind) => say("planner-message", text, kind);
const path = (suffix = "") => `/v1/roads/${encodeURIComponent(view.road)}/layout${suffix}`;

/// Features of a parsed layout, by id; none when it is not GeoJSON.
function featuresOf(text) {
  try {
    const fc = JSON.parse(text);
    return Array.isArray(fc?.features) ? fc.features : [];
  } catch {
    return [];
  }
}

function find(features, id) {
  return features.find((f) => featureId(f) === id || f.id === id);
}

/// One feature drawn in `style` into `group`, with its label on hover and
/// focus, and `data` on its element; null when it cannot be drawn.
function drawFeature(group, f, style, label, data, permanent = false) {
  let layer;
  try {
    layer = L.geoJSON(f, { style: () => style, pointToLayer: (_, ll) => L.circleMarker(ll, style) });
  } catch {
    return null;
  }
  layer.eachLayer((l) => {
    l.bindTooltip(label, { permanent, direction: "top", className: permanent ? "problem-label" : "" });
    focusable(l, label, data);
  });
  layer.addTo(group);
  return layer;
}

function clearOverlay() {
  draft.overlay?.remove();
  draft.overlay = L.featureGroup().addTo(view.map);
  document.getElementById("diff").replaceChildren();
  document.getElementById("layout-errors").replaceChildren();
  document.getElementById("planner-result").hidden = true;
}

/// Draws a dry run's (or a publish's) diff over the current layout.
function showDiff(answer) {
  clearOverlay();
  const list = document.getElementById("diff");
  const { added, removed, changed } = answer.diff;
  const items = [
    ...added.map((id) => ["added", id, find(draft.features, id)]),
    ...changed.map((id) => ["changed", id, find(draft.features, id)]),
    ...removed.map((id) => ["removed", id, find(view.layout.features, id)]),
  ];
  for (const [change, id, f] of items) {
    const label = `${id}: ${change}`;
    if (f) drawFeature(draft.overlay, f, STYLES[change], label, { change, feature: id });
    list.append(el("li", { dataset: { change, feature: id } }, label));
  }
  for (const i of answer.impact) {
    const what = [i.occupied && "occupied now", i.open_violations && `${i.open_violations} open violation(s)`]
      .filter(Boolean).join(" and ");
    list.append(el("li", { dataset: { impact: i.bay_id } }, `note: ${i.bay_id} (${i.change}) is ${what}`));
  }
  for (const w of answer.warnings) {
    list.append(el("li", { dataset: { warning: w.code } }, `warning ${w.code}: ${w.message}`));
  }
  document.getElementById("planner-result").hidden = false;
  if (draft.overlay.getLayers().length) view.map.fitBounds(draft.overlay.getBounds(), { padding: [30, 30], maxZoom: 19 });
}

/// Draws each validation error at its feature and lists it.
function showErrors(errors) {
  clearOverlay();
  const list = document.getElementById("layout-errors");
  const byFeature = new Map();
  for (const e of errors) {
    const key = e.feature_id ?? null;
    byFeature.set(key, [...(byFeature.get(key) ?? []), e]);
  }
  for (const [id, errs] of byFeature) {
    const text = errs.map((e) => `${e.code}: ${e.message}`).join("; ");
    const f = id != null ? find(draft.features, id) : null;
    const drawn = f && drawFeature(draft.overlay, f, STYLES.error, `${id}: ${text}`,
      { feature: id, errorCodes: errs.map((e) => e.code).join(" ") }, true);
    for (const e of errs) {
      const li = el("li", { dataset: { feature: id ?? "", code: e.code } },
        el("strong", {}, id ?? "the layout"), `: ${e.code}: ${e.message}`);
      if (drawn) {
        const b = el("button", { type: "button" }, "Show on map");
        b.addEventListener("click", () => {
          view.map.fitBounds(drawn.getBounds(), { padding: [60, 60], maxZoom: 20 });
          drawn.eachLayer((l) => l.getElement()?.focus());
        });
        li.append(" ", b);
      } else if (id != null) {
        li.append(" (not drawn: it has no readable geometry)");
      }
      list.append(li);
    }
  }
  document.getElementById("planner-result").hidden = false;
  if (draft.overlay.getLayers().length) view.map.fitBounds(draft.overlay.getBounds(), { padding: [60, 60], maxZoom: 19 });
}

function setPublish(enabled) {
  const b = document.getElementById("publish");
  b.disabled = !enabled;
  b.textContent = enabled
    ? `Publish as the next revision (drawn from revision ${view.revision})`
    : "Publish (after a dry run without problems)";
}

/// Sends the chosen layout as a dry run.
export async function check(text, name) {
  if (!session.token || !view.road) return;
  draft.text = text;
  draft.name = name;
  draft.features = featuresOf(text);
  draft.against = view.revision;
  document.getElementById("reload").hidden = true;
  setPublish(false);
  tell(`checking ${name}…`);
  const r = await authorised(path("?dry_run=true"), {
    method: "PUT", headers: { "Content-Type": "application/geo+json" }, body: text,
  });
  const b = await body(r);
  if (r.ok) {
    showDiff(b);
    const { added, removed, changed } = b.diff;
    const n = added.length + removed.length + changed.length;
    tell(n === 0
      ? `${name} passes every check and changes nothing.`
      : `${name} passes every check: ${added.length} added, ${removed.length} removed, ${changed.length} changed.`);
    if (b.revision !== view.revision) {
      await stale(`The road is at revision ${b.revision} now, not ${view.revision} as drawn here`);
      return;
    }
    setPublish(n > 0);
  } else if (r.status === 422 && Array.isArray(b.errors)) {
    showErrors(b.errors);
    tell(`${name} has ${b.errors.length} problem${b.errors.length === 1 ? "" : "s"}; each is drawn at its feature and listed below.`, "error");
  } else {
    clearOverlay();
    tell(`${r.status}: ${b.detail ?? "the layout was refused"}`, "error");
  }
}

/// Says plainly that someone published meanwhile, naming their revision.
async function stale(lead) {
  const r = await fetch(path("/revisions"));
  const latest = r.ok ? (await r.json()).revisions.at(-1) : null;
  const who = latest
    ? `someone (${latest.created_by}) published revision ${latest.revision} at ${new Date(latest.created_at).toLocaleString()}`
    : "someone published a newer revision";
  const drawn = draft.against ?? view.revision;
  tell(`${lead}: ${who} after this page loaded revision ${drawn}. `
    + `Your layout was drawn from revision ${drawn}, so publishing it would undo their changes. `
    + `Reload the road, redo your changes on the current layout, and check it again.`, "error");
  setPublish(false);
  document.getElementById("reload").hidden = false;
  listRevisions();
}

async function publish() {
  if (draft.text == null) return;
  setPublish(false);
  // Until the answer is handled, the stream's news of this very revision is
  // not taken for someone else's.
  draft.publishing = true;
  try {
    await publishDraft();
  } finally {
    draft.publishing = false;
  }
}

async function publishDraft() {
  const from = draft.against;
  const r = await authorised(path(), {
    method: "PUT",
    headers: { "Content-Type": "application/geo+json", "If-Match": `"${from}"` },
    body: draft.text,
  });
  const b = await body(r);
  if (r.ok) {
    draft.text = null;
    if (view.revision !== b.revision) await openRoad(view.road);
    clearOverlay();
    tell(`Published revision ${b.revision} (drawn from revision ${from}).`);
    await listRevisions();
  } else if (r.status === 412) {
    await stale("Not published");
  } else if (r.status === 422 && Array.isArray(b.errors)) {
    showErrors(b.errors);
    tell(`Not published: ${b.detail}`, "error");
  } else {
    tell(`Not published: ${r.status}: ${b.detail ?? "refused"}`, "error");
  }
}

/// The road's revisions, oldest first, each drawable over the current one.
export async function listRevisions() {
  if (!view.road) return;
  const list = document.getElementById("revisions");
  const r = await fetch(path("/revisions"));
  if (!r.ok) return;
  const { revisions } = await r.json();
  list.replaceChildren(...revisions.map((rev) => {
    const current = rev.revision === view.revision ? " (drawn as the current layout)" : "";
    const li = el("li", { dataset: { revision: rev.revision } },
      `revision ${rev.revision} by ${rev.created_by}, ${new Date(rev.created_at).toLocaleString()}: `
      + `${rev.bays} bays, ${rev.barriers} barriers${rev.based_on != null ? `, drawn from ${rev.based_on}` : ""}${current} `);
    const b = el("button", { type: "button", dataset: { draw: rev.revision } }, `Draw revision ${rev.revision}`);
    b.addEventListener("click", () => drawRevision(rev.revision));
    li.append(b);
    return li;
  }));
}

/// Draws revision `n` (GET .../layout?revision=n) as outlines over the map.
async function drawRevision(n) {
  draft.revisionOverlay?.remove();
  const r = await fetch(path(`?revision=${n}`));
  const b = await body(r);
  if (!r.ok) {
    tell(`${r.status}: ${b.detail ?? `revision ${n} cannot be read`}`, "error");
    return;
  }
  draft.revisionOverlay = L.geoJSON(b, { style: () => STYLES.revision }).addTo(view.map);
  draft.revisionOverlay.eachLayer((l) => l.getElement()?.setAttribute("data-revision", n));
  document.getElementById("revision-drawn").textContent =
    `revision ${n} drawn as purple dashed outlines (${b.features.length} features)`;
  document.getElementById("hide-revision").hidden = false;
}

function chosen(file) {
  if (!file) return;
  file.text().then((text) => check(text, file.name));
}

/// Wires the planner's controls once.
export function setUp() {
  const input = document.getElementById("layout-file");
  input.addEventListener("change", () => {
    chosen(input.files[0]);
    input.value = "";
  });
  for (const zone of [document.getElementById("drop"), document.getElementById("map")]) {
    zone.addEventListener("dragover", (e) => {
      if (!session.token) return;
      e.preventDefault();
      document.getElementById("drop").dataset.over = "true";
    });
    zone.addEventListener("dragleave", () => delete document.getElementById("drop").dataset.over);
    zone.addEventListener("drop", (e) => {
      if (!session.token) return;
      e.preventDefault();
      delete document.getElementById("drop").dataset.over;
      chosen(e.dataTransfer.files[0]);
    });
  }
  document.getElementById("publish").addEventListener("click", publish);
  document.getElementById("reload").addEventListener("click", async () => {
    await openRoad(view.road);
    clearOverlay();
    draft.text = null;
    document.getElementById("reload").hidden = true;
    tell(`Reloaded: revision ${view.revision}. Redo your changes on it and choose the file again.`);
    await listRevisions();
  });
  document.getElementById("clear-draft").addEventListener("click", () => {
    clearOverlay();
    draft.text = null;
    setPublish(false);
    tell("");
  });
  document.getElementById("hide-revision").addEventListener("click", () => {
    draft.revisionOverlay?.remove();
    document.getElementById("revision-drawn").textContent = "";
    document.getElementById("hide-revision").hidden = true;
  });
  setPublish(false);
}

/// The live stream told of revision `revision`, now drawn: a layout checked
/// against an older one must not be published as it is, and the page says
/// so at once rather than at Publish.
export async function newRevision(revision) {
  await listRevisions();
  if (draft.text == null || draft.publishing || draft.against == null || draft.against >= revision) return;
  await stale(`Revision ${revision} arrived while your layout waited: it was checked against revision ${draft.against}, not ${revision}`);
}

/// A new road on the page: nothing of the last one's draft stays.
export function reset() {
  draft.revisionOverlay?.remove();
  draft.text = null;
  if (view.map) clearOverlay();
  setPublish(false);
  document.getElementById("revision-drawn").textContent = "";
  document.getElementById("hide-revision").hidden = true;
  listRevisions();
}
