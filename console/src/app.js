// The console page: the road list with live occupancy, a map of the chosen
// road whose bays and layout follow the live stream, and, with a token kept
// for this tab only, what its role may do: the warden's violations, the
// road's open cases (both kept current by the stream) and the planner's
// layout checks. Small ES modules; Leaflet is the one dependency
// (console/package.json).
import "/console/leaflet.js";
import { json, session } from "./api.js";
import { clearCases, listCases, onCase } from "./cases.js";
import * as planner from "./planner.js";
import { listen, makeMap, openRoad, showRoadCounts, view } from "./road.js";
import { showSections, signIn, signOut } from "./signin.js";
import { clearViolations, listViolations, onViolation, pick } from "./warden.js";

async function refresh() {
  await Promise.all([listViolations(), listCases()]);
}

async function choose(roadId) {
  for (const b of document.querySelectorAll("#roads button")) {
    b.setAttribute("aria-current", String(b.dataset.road === roadId));
  }
  clearCases();
  await openRoad(roadId);
  planner.reset();
  await refresh();
}

async function listRoads() {
  const { roads } = await json("/v1/roads");
  const ul = document.getElementById("roads");
  ul.replaceChildren();
  for (const r of roads) {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.road = r.road_id;
    b.dataset.name = [r.name, r.name_en].filter(Boolean).join(" · ");
    showRoadCounts(r.road_id, r);
    b.addEventListener("click", () => choose(r.road_id));
    const li = document.createElement("li");
    li.append(b);
    ul.append(li);
  }
  return roads;
}

function forget() {
  clearCases();
  clearViolations();
}

document.getElementById("warden-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if ((await signIn(document.getElementById("token").value.trim())) === false) forget();
  // Re-opened with the token (or without it, when it was refused).
  listen();
  await refresh();
});

document.getElementById("sign-out").addEventListener("click", () => {
  signOut();
  forget();
  listen();
});

view.onPick = pick;
view.onViolation = onViolation;
view.onCase = onCase;
// A new revision of the road, published here or anywhere: redrawn at once
// (the stream is re-opened with it, so every bay's status comes again).
view.onLayout = async (l) => {
  if (l.road_id !== view.road || l.revision <= view.revision) return;
  await openRoad(view.road);
  await planner.newRevision(l.revision);
};

// The stream refused (EventSource gives up on any answer but 200, and does
// not say which): if the token is why (expired or revoked since), the page
// says so and listens without it; otherwise it opens the stream again.
view.onLost = async (source) => {
  if (source.readyState !== EventSource.CLOSED || source !== view.source) return;
  if (session.token && (await signIn(session.token)) === false) {
    forget();
    listen();
  } else {
    setTimeout(() => source === view.source && listen(), 2000);
  }
};

makeMap(await json("/console/config"));
planner.setUp();
showSections();
// A token kept from earlier in this tab is asked about again: it may have
// expired or been revoked since.
if (session.token) await signIn(session.token);
const roads = await listRoads();
if (roads.length > 0) await choose(roads[0].road_id);
// The chosen road's entry follows its stream; the others are asked for
// again every half minute.
setInterval(async () => {
  const { roads } = await json("/v1/roads");
  for (const r of roads) if (r.road_id !== view.road) showRoadCounts(r.road_id, r);
}, 30000);
