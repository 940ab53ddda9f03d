//! `GET /v1/public/datex2/parking-light`: the street as a DATEX II v3
//! Parking Publication Light (JSON) for journey planners (contract 6.3).
//! Public and rate limited like the other public endpoints; answered from
//! the street, never the store. The rules are `domain::datex`.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, get, web};
use chrono::{DateTime, SecondsFormat, Utc};
use geo::{Centroid, MultiPolygon, Point};
use serde_json::{Value, json};

use super::AppState;
use super::problem::ApiError;
use super::public::{admit, public};
use crate::domain::datex;
use crate::domain::occupancy::Counts;

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn location(p: Option<Point<f64>>) -> Value {
    match p {
        Some(p) => json!({"coordinatesForDisplay": {"latitude": p.y(), "longitude": p.x()}}),
        None => Value::Null,
    }
}

/// The publication: a `parkingSite` per road side (one `closed` site for a
/// road whose layout has no bays) and a `parkingSpace` per bay. Public.
#[utoipa::path(get, path = "/v1/public/datex2/parking-light", tag = "public",
    responses((status = 200, description = "DATEX II v3 Parking Publication Light, JSON"),
              (status = 429, body = super::problem::Problem)))]
#[get("/datex2/parking-light")]
pub async fn parking_light(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    admit(&state, &req)?;
    let now = state.clock.now();
    let map = state.street.map();
    let mut sites = Vec::new();
    let mut spaces = Vec::new();
    let mut newest: Option<DateTime<Utc>> = None;
    for road in map.roads.values() {
        let reports = state.street.reports(road, now);
        // Sides by name; a bay with no side makes a site of the road alone.
        let mut sides: BTreeMap<Option<&str>, (Counts, Vec<usize>)> = BTreeMap::new();
        for (i, (bay, report)) in road.layout.bays.iter().zip(&reports).enumerate() {
            let e = sides.entry(bay.side.as_deref()).or_default();
            e.0.add(report.status);
            e.1.push(i);
        }
        let road_id = road.info.road_id.as_str();
        if sides.is_empty() {
            let at = road.info.created_at;
            newest = newest.max(Some(at));
            sites.push(json!({
                "id": road_id,
                "name": road.layout.road.name,
                "roadName": road.layout.road.name,
                "type": "onStreetParking",
                "parkingSiteStatus": datex::site_status(&Counts::default()),
                "numberOfSpaces": 0,
                "availableSpaces": 0,
                "lastUpdate": time(at),
                "location": location(road.layout.road.centre_line.centroid()),
            }));
        }
        for (side, (counts, bays)) in sides {
            let site_id = match side {
                Some(s) => format!("{road_id}:{s}"),
                None => road_id.to_owned(),
            };
            let updated = bays
                .iter()
                .filter_map(|&i| reports[i].since)
                .max()
                .unwrap_or(road.info.created_at)
                .max(road.info.created_at);
            newest = newest.max(Some(updated));
            let shape = MultiPolygon::new(
                bays.iter()
                    .map(|&i| road.layout.bays[i].polygon.clone())
                    .collect(),
            );
            sites.push(json!({
                "id": site_id,
                "name": match side {
                    Some(s) => format!("{} ({s})", road.layout.road.name),
                    None => road.layout.road.name.clone(),
                },
                "roadName": road.layout.road.name,
                "type": "onStreetParking",
                "parkingSiteStatus": datex::site_status(&counts),
                "numberOfSpaces": counts.bays,
                "availableSpaces": counts.free,
                "lastUpdate": time(updated),
                "location": location(shape.centroid()),
            }));
            for i in bays {
                let bay = &road.layout.bays[i];
                let r = reports[i];
                let mut space = json!({
                    "id": bay.bay_id.as_str(),
                    "parkingSiteReference": site_id,
                    "availability": datex::availability(r.status),
                    "location": location(bay.polygon.centroid()),
                });
                if let Some(since) = r.since {
                    space["lastUpdate"] = json!(time(since));
                }
                spaces.push(space);
            }
        }
    }
    let body = json!({
        "parkingPublicationLight": {
            "lang": "zh",
            "publicationTime": time(now),
            "publicationCreator": {"country": "cn", "nationalIdentifier": "kerbside"},
            "lastUpdate": time(newest.unwrap_or(now)),
            "parkingSite": sites,
            "parkingSpace": spaces,
        }
    });
    Ok(public(HttpResponse::Ok().json(body)))
}
