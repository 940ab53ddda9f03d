// The console page: the road list with live occupancy, a map of the chosen
// road whose bays follow the live stream, and, with a token kept for this
// tab only, the warden's violations, the road's open cases and the
// planner's layout checks. Small ES modules; Leaflet is the one dependency
// (console/package.json).
import "/console/leaflet.js";
import { json, session, useToken } from "./api.js";
import { listCases } from "./cases.js";
import * as planner from "./planner.js";
import { listen, makeMap, openRoad, view } from "./road.js";
import { listViolations, onViolation, pick } from "./warden.js";

function showSignedIn() {
  for (const id of ["warden", "cases-section", "planner"]) {
    document.getElementById(id).hidden = !session.token;
  }
}

async function refresh() {
  await Promise.all([listViolations(), listCases()]);
}

async function choose(roadId) {
  for (const b of document.querySelectorAll("#roads button")) {
    b.setAttribute("aria-current", String(b.dataset.road === roadId));
  }
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
    const name = [r.name, r.name_en].filter(Boolean).join(" · ");
    b.textContent = `${name} — ${r.occupied}/${r.bays} occupied`;
    b.addEventListener("click", () => choose(r.road_id));
    const li = document.createElement("li");
    li.append(b);
    ul.append(li);
  }
  return roads;
}

document.getElementById("warden-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  useToken(document.getElementById("token").value.trim());
  showSignedIn();
  listen();
  await refresh();
});

view.onPick = pick;
// A warden's report opens a case as well as filing a violation: the cases
// are read again after a violation, at most once a second.
let casesDue = null;
view.onViolation = (v) => {
  onViolation(v);
  casesDue ??= setTimeout(() => {
    casesDue = null;
    listCases();
  }, 1000);
};
// Cases change without a violation too (a deadline passes, a party answers).
setInterval(() => session.token && listCases(), 30_000);

makeMap(await json("/console/config"));
planner.setUp();
showSignedIn();
const roads = await listRoads();
if (roads.length > 0) await choose(roads[0].road_id);
