//! The Curb Data Specification 1.1 under `/cds/v1` (contract 6.3): the
//! Curbs API (public), the Events API and the Metrics API's sessions and
//! hourly aggregates (any token). The mapping itself is `domain::cds`;
//! this file reads the street (current layouts, bay states) and the store
//! (revisions, sessions, event times, violations, hourly history), checks
//! queries and media types, and wraps answers in the CDS envelope.
//!
//! Every JSON answer is `application/vnd.cds+json;version=1.1`, every CSV
//! `application/vnd.cds+csv;version=1.1`; an `Accept` that admits neither
//! (see `domain::cds::accepts`) is a 406. Errors stay RFC 9457
//! problem+json, as everywhere in kerbside.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, get, web};
use chrono::{DateTime, Duration, Utc};
use geo::{Centroid, Distance, Euclidean, Intersects, Point, Polygon, Rect};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::problem::{ApiError, blocking};
use crate::domain::cds::{self, Comms, DatedZone, Policy, Revision, RoadCatalogue, SessionRow};
use crate::domain::ids::BayId;
use crate::domain::occupancy::BayStatus;
use crate::spatial::LocalFrame;
use crate::store::{SessionCursor, StoredLayout};
use crate::street::RoadView;

/// The place filter of a query struct that carries its fields.
macro_rules! place_of {
    ($q:expr) => {
        PlaceQuery {
            min_lat: $q.min_lat,
            min_lng: $q.min_lng,
            max_lat: $q.max_lat,
            max_lng: $q.max_lng,
            lat: $q.lat,
            lng: $q.lng,
            radius: $q.radius,
        }
    };
}

/// The time range of a query struct that carries its fields.
macro_rules! range_of {
    ($q:expr) => {
        TimeRange {
            start_time: $q.start_time,
            end_time: $q.end_time,
        }
    };
}

/// ISO 4217 code in every envelope. kerbside charges nothing; the
/// specification requires the field, and the deployments are in China.
pub const CURRENCY: &str = "CNY";
/// The `author` of every envelope.
pub const AUTHOR: &str = "kerbside";
/// Widest `start_time`..`end_time` of the Events and Metrics queries.
pub const MAX_WINDOW_DAYS: i64 = 31;

const JSON_TYPE: &str = "application/vnd.cds+json";
const CSV_TYPE: &str = "application/vnd.cds+csv";

/// 406 unless the request's `Accept` admits `media` at version 1.1.
fn negotiate(req: &HttpRequest, media: &str) -> Result<(), ApiError> {
    let header = match req.headers().get(actix_web::http::header::ACCEPT) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::NotAcceptable("the Accept header is not text".into()))?,
        ),
    };
    if cds::accepts(header, media) {
        Ok(())
    } else {
        Err(ApiError::NotAcceptable(format!(
            "this endpoint answers {media};version={} only, which Accept {:?} excludes",
            cds::VERSION,
            header.unwrap_or_default()
        )))
    }
}

/// A JSON answer in the CDS envelope.
fn envelope(state: &AppState, data: Value, last_updated_ms: i64) -> HttpResponse {
    let body = json!({
        "version": cds::VERSION,
        "time_zone": state.timezone.name(),
        "last_updated": last_updated_ms,
        "currency": CURRENCY,
        "author": AUTHOR,
        "data": data,
    });
    HttpResponse::Ok()
        .content_type(cds::JSON_MEDIA)
        .body(body.to_string())
}

/// Each current road with its catalogue: the store's earlier revisions,
/// then the street's current one (the street answers for the present).
async fn catalogues(state: &AppState) -> Result<Vec<(Arc<RoadView>, RoadCatalogue)>, ApiError> {
    let roads: Vec<Arc<RoadView>> = state.street.map().roads.values().cloned().collect();
    let store = state.store.clone();
    let ids: Vec<_> = roads
        .iter()
        .map(|r| (r.info.road_id.clone(), r.info.revision))
        .collect();
    let histories: Vec<Vec<StoredLayout>> = blocking(move || {
        ids.iter()
            .map(|(road, current)| {
                let mut h = store.layout_history(road)?;
                h.retain(|l| l.info.revision < *current);
                Ok(h)
            })
            .collect()
    })
    .await?;
    Ok(roads
        .into_iter()
        .zip(histories)
        .map(|(road, earlier)| {
            let mut history: Vec<Revision<'_>> = earlier
                .iter()
                .map(|l| Revision {
                    revision: l.info.revision,
                    created_at: l.info.created_at,
                    layout: &l.layout,
                })
                .collect();
            history.push(Revision {
                revision: road.info.revision,
                created_at: road.info.created_at,
                layout: &road.layout,
            });
            let catalogue = cds::catalogue(&history);
            (road, catalogue)
        })
        .collect())
}

/// The newest revision's publish time: when the Curbs data last changed.
fn layouts_updated(roads: &[(Arc<RoadView>, RoadCatalogue)]) -> i64 {
    roads
        .iter()
        .map(|(r, _)| r.info.created_at.timestamp_millis())
        .max()
        .unwrap_or(0)
}

fn polygon_json(p: &Polygon<f64>) -> Value {
    let ring =
        |l: &geo::LineString<f64>| -> Vec<[f64; 2]> { l.0.iter().map(|c| [c.x, c.y]).collect() };
    let mut rings = vec![ring(p.exterior())];
    rings.extend(p.interiors().iter().map(ring));
    json!({"type": "Polygon", "coordinates": rings})
}

fn point_json(p: Point<f64>) -> Value {
    json!({"type": "Point", "coordinates": [p.x(), p.y()]})
}

/// The place filters CDS defines for zones, spaces and the metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlaceQuery {
    /// Bounding box, degrees: all four or none.
    pub min_lat: Option<f64>,
    pub min_lng: Option<f64>,
    pub max_lat: Option<f64>,
    pub max_lng: Option<f64>,
    /// A point, degrees, and a radius in centimetres: all three or none.
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    pub radius: Option<f64>,
}

/// A checked place filter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Place {
    Anywhere,
    Box(Rect<f64>),
    /// Within `radius_m` metres of the point.
    Near(Point<f64>, f64),
}

fn lat_lng(what: &str, lat: f64, lng: f64) -> Result<(), ApiError> {
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lng) {
        return Err(ApiError::BadRequest(format!(
            "{what} ({lat}, {lng}) is not a latitude and longitude in degrees"
        )));
    }
    Ok(())
}

impl PlaceQuery {
    /// 400 when only part of a box or circle is given, or it is out of range.
    pub(super) fn place(&self) -> Result<Place, ApiError> {
        let bbox = [self.min_lat, self.min_lng, self.max_lat, self.max_lng];
        let circle = [self.lat, self.lng, self.radius];
        let boxed = bbox.iter().filter(|v| v.is_some()).count();
        let round = circle.iter().filter(|v| v.is_some()).count();
        if boxed != 0 && boxed != 4 {
            return Err(ApiError::BadRequest(
                "min_lat, min_lng, max_lat and max_lng go together: give all four or none".into(),
            ));
        }
        if round != 0 && round != 3 {
            return Err(ApiError::BadRequest(
                "lat, lng and radius go together: give all three or none".into(),
            ));
        }
        if boxed == 4 && round == 3 {
            return Err(ApiError::BadRequest(
                "give a bounding box or a point and radius, not both".into(),
            ));
        }
        if let [Some(a), Some(b), Some(c), Some(d)] = bbox {
            lat_lng("min_lat, min_lng", a, b)?;
            lat_lng("max_lat, max_lng", c, d)?;
            if a > c || b > d {
                return Err(ApiError::BadRequest(
                    "the bounding box's minimum is above its maximum".into(),
                ));
            }
            return Ok(Place::Box(Rect::new(
                geo::coord! {x: b, y: a},
                geo::coord! {x: d, y: c},
            )));
        }
        if let [Some(lat), Some(lng), Some(r)] = circle {
            lat_lng("lat, lng", lat, lng)?;
            if !r.is_finite() || r <= 0.0 || r > 100_000_000.0 {
                return Err(ApiError::BadRequest(format!(
                    "radius {r} is not a distance in centimetres between 0 and 1000 km"
                )));
            }
            return Ok(Place::Near(Point::new(lng, lat), r / 100.0));
        }
        Ok(Place::Anywhere)
    }
}

impl Place {
    /// Whether `p` is in the place, and its distance (metres) from the
    /// centre when the place is a circle (0 otherwise).
    fn admits(&self, p: &Polygon<f64>) -> Option<f64> {
        match self {
            Place::Anywhere => Some(0.0),
            Place::Box(r) => r.intersects(p).then_some(0.0),
            Place::Near(c, radius) => {
                let f = LocalFrame::at(c.x(), c.y());
                let d = Euclidean.distance(&Point::new(0.0, 0.0), &f.polygon_to_metres(p));
                (d <= *radius).then_some(d)
            }
        }
    }
}

/// Keeps what `place` admits, nearest first for a circle (CDS: ascending
/// distance from the centre), otherwise in the given order.
fn filter_place<T>(items: Vec<T>, place: &Place, shape: impl Fn(&T) -> &Polygon<f64>) -> Vec<T> {
    let mut kept: Vec<(f64, usize, T)> = items
        .into_iter()
        .enumerate()
        .filter_map(|(i, t)| place.admits(shape(&t)).map(|d| (d, i, t)))
        .collect();
    kept.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    kept.into_iter().map(|(_, _, t)| t).collect()
}

fn parse_uuid(name: &str, s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s.trim())
        .map_err(|_| ApiError::BadRequest(format!("{name} {s:?} is not a UUID")))
}

/// Latest instant a query may name: the end of year 9999, ms.
const MAX_MS: i64 = 253_402_300_799_999;

/// A CDS Timestamp (epoch ms) from 1970 to 9999; 400 otherwise, so that
/// no arithmetic on it can leave chrono's range.
fn instant(name: &str, ms: i64) -> Result<DateTime<Utc>, ApiError> {
    (0..=MAX_MS)
        .contains(&ms)
        .then(|| DateTime::from_timestamp_millis(ms))
        .flatten()
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{name} {ms} is not a timestamp in milliseconds from 1970 to 9999"
            ))
        })
}

/// Bay states as a zone or space shows them, by bay id.
fn availability(
    state: &AppState,
    road: &RoadView,
    now: DateTime<Utc>,
) -> HashMap<BayId, BayStatus> {
    road.layout
        .bays
        .iter()
        .map(|b| b.bay_id.clone())
        .zip(
            state
                .street
                .reports(road, now)
                .into_iter()
                .map(|r| r.status),
        )
        .collect()
}

fn zone_json(
    z: &DatedZone,
    include_geometry: bool,
    extents: &BTreeMap<BayId, cds::Extent>,
    states: Option<(&HashMap<BayId, BayStatus>, i64)>,
) -> Value {
    let zone = &z.zone;
    let mut v = json!({
        "curb_zone_id": zone.curb_zone_id,
        "curb_policy_ids": zone.policy_ids,
        "published_date": z.published_ms,
        "last_updated_date": z.last_updated_ms,
        "start_date": z.published_ms,
        "prev_curb_zone_ids": z.prev_ids,
        "name": format!(
            "{} {} {}",
            zone.road_name,
            zone.side.as_deref().unwrap_or("-"),
            zone.rules.kind.as_str()
        ),
        "user_zone_id": zone.key,
        "street_name": zone.road_name,
        "length": zone.length_cm,
        "num_spaces": zone.bays.len(),
        "curb_space_ids": zone.bays.iter().map(cds::space_id).collect::<Vec<_>>(),
        "curb_object_ids": zone.objects.iter().map(cds::object_id).collect::<Vec<_>>(),
        "median": false,
        "entire_roadway": false,
    });
    if include_geometry {
        v["geometry"] = polygon_json(&zone.geometry);
    }
    if let Some(side) = zone.street_side {
        v["street_side"] = json!(side);
    }
    if let Some(end) = z.end_ms {
        v["end_date"] = json!(end);
    }
    if let (Some((states, at)), None) = (states, z.end_ms) {
        let free: Vec<i64> = zone
            .bays
            .iter()
            .filter(|b| states.get(*b) == Some(&BayStatus::Free))
            .filter_map(|b| extents.get(b).map(cds::Extent::length_cm))
            .collect();
        v["available_space_lengths"] = json!(free);
        v["availability_time"] = json!(at);
    }
    v
}

/// Zone query: the place filters, plus CDS's own.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ZoneQuery {
    /// A Curb Area id. kerbside publishes no areas, so it matches nothing.
    pub area: Option<String>,
    /// `false` leaves out each zone's `geometry`.
    pub include_geometry: Option<bool>,
    /// Zones valid at this instant (ms; default now).
    pub time: Option<i64>,
    /// Bounding box, degrees: all four or none.
    pub min_lat: Option<f64>,
    pub min_lng: Option<f64>,
    pub max_lat: Option<f64>,
    pub max_lng: Option<f64>,
    /// A point, degrees, and a radius in centimetres: all three or none.
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    pub radius: Option<f64>,
}

fn valid_at(z: &DatedZone, t: i64) -> bool {
    z.published_ms <= t && z.end_ms.is_none_or(|e| t < e)
}

/// Curb Zones: a run of equally ruled bays on one side of a road. Public.
#[utoipa::path(get, path = "/cds/v1/curbs/zones", tag = "cds",
    params(ZoneQuery),
    responses((status = 200, description = "CDS envelope, `data.zones`", content_type = "application/vnd.cds+json;version=1.1"),
              (status = 400, body = super::problem::Problem), (status = 406, body = super::problem::Problem)))]
#[get("/curbs/zones")]
pub async fn list_zones(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<ZoneQuery>,
) -> Result<HttpResponse, ApiError> {
    negotiate(&req, JSON_TYPE)?;
    let place = query.place()?;
    let area = query
        .area
        .as_deref()
        .map(|a| parse_uuid("area", a))
        .transpose()?;
    let now = state.clock.now();
    let t = query.time.map(|t| instant("time", t)).transpose()?;
    let at = t.unwrap_or(now).timestamp_millis();
    let roads = catalogues(&state).await?;
    let mut out = Vec::new();
    for (road, cat) in &roads {
        let extents = cds::extents(&road.layout);
        let states = availability(&state, road, now);
        let live = t.is_none().then_some((&states, now.timestamp_millis()));
        let zones: Vec<&DatedZone> = cat.zones.iter().filter(|z| valid_at(z, at)).collect();
        for z in zones {
            if area.is_some() {
                continue;
            }
            out.push((
                z.zone.geometry.clone(),
                zone_json(z, query.include_geometry != Some(false), &extents, live),
            ));
        }
    }
    let zones: Vec<Value> = filter_place(out, &place, |(g, _)| g)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let updated = if t.is_none() {
        now.timestamp_millis()
    } else {
        layouts_updated(&roads)
    };
    Ok(envelope(&state, json!({"zones": zones}), updated))
}

/// `time` and `show_historic` of a fetched zone.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ZoneFetch {
    /// 404 unless the zone is valid at this instant (ms).
    pub time: Option<i64>,
    /// `true` finds retired zones too.
    pub show_historic: Option<bool>,
}

/// One Curb Zone, current or (with `show_historic=true`) retired. Public.
#[utoipa::path(get, path = "/cds/v1/curbs/zones/{curb_zone_id}", tag = "cds",
    params(("curb_zone_id" = String, Path), ZoneFetch),
    responses((status = 200, description = "CDS envelope, `data` the zone", content_type = "application/vnd.cds+json;version=1.1"),
              (status = 400, body = super::problem::Problem), (status = 404, body = super::problem::Problem),
              (status = 406, body = super::problem::Problem)))]
#[get("/curbs/zones/{curb_zone_id}")]
pub async fn get_zone(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<ZoneFetch>,
) -> Result<HttpResponse, ApiError> {
    negotiate(&req, JSON_TYPE)?;
    let id = parse_uuid("curb_zone_id", &path)?;
    let now = state.clock.now();
    let t = query.time.map(|t| instant("time", t)).transpose()?;
    let roads = catalogues(&state).await?;
    for (road, cat) in &roads {
        let Some(z) = cat.zones.iter().find(|z| z.zone.curb_zone_id == id) else {
            continue;
        };
        if z.end_ms.is_some() && query.show_historic != Some(true) {
            return Err(ApiError::NotFound(format!(
                "curb zone {id} is retired; ask with show_historic=true"
            )));
        }
        if let Some(t) = t
            && !valid_at(z, t.timestamp_millis())
        {
            return Err(ApiError::NotFound(format!(
                "curb zone {id} is not valid at {}",
                t.timestamp_millis()
            )));
        }
        let extents = cds::extents(&road.layout);
        let states = availability(&state, road, now);
        let live = t.is_none().then_some((&states, now.timestamp_millis()));
        return Ok(envelope(
            &state,
            zone_json(z, true, &extents, live),
            now.timestamp_millis(),
        ));
    }
    Err(ApiError::NotFound(format!("no curb zone {id}")))
}

/// Space query.
#[derive(Debug, Deserialize, IntoParams)]
pub struct SpaceQuery {
    /// Only the spaces of this Curb Zone.
    pub zone: Option<String>,
    /// Availability as of this instant (ms). kerbside knows the present
    /// only: with `time`, spaces come without availability.
    pub time: Option<i64>,
    /// Bounding box, degrees: all four or none.
    pub min_lat: Option<f64>,
    pub min_lng: Option<f64>,
    pub max_lat: Option<f64>,
    pub max_lng: Option<f64>,
    /// A point, degrees, and a radius in centimetres: all three or none.
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    pub radius: Option<f64>,
}

/// Curb Spaces: one per bay, with availability now. Public.
#[utoipa::path(get, path = "/cds/v1/curbs/spaces", tag = "cds",
    params(SpaceQuery),
    responses((status = 200, description = "CDS envelope, `data.spaces`", content_type = "application/vnd.cds+json;version=1.1"),
              (status = 400, body = super::problem::Problem), (status = 406, body = super::problem::Problem)))]
#[get("/curbs/spaces")]
pub async fn list_spaces(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<SpaceQuery>,
) -> Result<HttpResponse, ApiError> {
    negotiate(&req, JSON_TYPE)?;
    let place = query.place()?;
    let zone = query
        .zone
        .as_deref()
        .map(|z| parse_uuid("zone", z))
        .transpose()?;
    let t = query.time.map(|t| instant("time", t)).transpose()?;
    let now = state.clock.now();
    let roads = catalogues(&state).await?;
    let mut out = Vec::new();
    for (road, cat) in &roads {
        let extents = cds::extents(&road.layout);
        let states = availability(&state, road, now);
        for z in cat.zones.iter().filter(|z| z.end_ms.is_none()) {
            if zone.is_some_and(|id| id != z.zone.curb_zone_id) {
                continue;
            }
            for (n, bay_id) in z.zone.bays.iter().enumerate() {
                let Some(bay) = road.layout.bays.iter().find(|b| &b.bay_id == bay_id) else {
                    continue;
                };
                let dates = cat.spaces.get(bay_id).copied().unwrap_or(cds::SpaceDates {
                    published_ms: z.published_ms,
                    last_updated_ms: z.last_updated_ms,
                });
                let mut v = json!({
                    "curb_space_id": cds::space_id(bay_id),
                    "geometry": polygon_json(&bay.polygon),
                    "name": bay_id.as_str(),
                    "published_date": dates.published_ms,
                    "last_updated_date": dates.last_updated_ms,
                    "curb_zone_id": z.zone.curb_zone_id,
                    "space_number": n + 1,
                    "length": extents.get(bay_id).map(cds::Extent::length_cm),
                });
                if let Some(w) = extents.get(bay_id).and_then(cds::Extent::width_cm) {
                    v["width"] = json!(w);
                }
                if t.is_none() {
                    match states.get(bay_id) {
                        Some(BayStatus::Free) => v["available"] = json!(true),
                        Some(BayStatus::Occupied) => v["available"] = json!(false),
                        _ => {}
                    }
                    if v.get("available").is_some() {
                        v["availability_time"] = json!(now.timestamp_millis());
                    }
                }
                out.push((bay.polygon.clone(), v));
            }
        }
    }
    let spaces: Vec<Value> = filter_place(out, &place, |(g, _)| g)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    Ok(envelope(
        &state,
        json!({"spaces": spaces}),
        now.timestamp_millis(),
    ))
}

/// Object query.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ObjectQuery {
    /// Only objects published by this instant (ms).
    pub time: Option<i64>,
    /// Only objects of this Curb Zone.
    pub zone: Option<String>,
    /// Only objects of this Curb Space (kerbside relates objects to zones,
    /// so this matches none).
    pub space: Option<String>,
}

/// Curb Objects: planters, bollards and fences. Public.
#[utoipa::path(get, path = "/cds/v1/curbs/objects", tag = "cds",
    params(ObjectQuery),
    responses((status = 200, description = "CDS envelope, `data.objects`", content_type = "application/vnd.cds+json;version=1.1"),
              (status = 400, body = super::problem::Problem), (status = 406, body = super::problem::Problem)))]
#[get("/curbs/objects")]
pub async fn list_objects(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<ObjectQuery>,
) -> Result<HttpResponse, ApiError> {
    negotiate(&req, JSON_TYPE)?;
    let zone = query
        .zone
        .as_deref()
        .map(|z| parse_uuid("zone", z))
        .transpose()?;
    let space = query
        .space
        .as_deref()
        .map(|s| parse_uuid("space", s))
        .transpose()?;
    let t = query.time.map(|t| instant("time", t)).transpose()?;
    let roads = catalogues(&state).await?;
    let mut out = Vec::new();
    for (road, cat) in &roads {
        if space.is_some() {
            break;
        }
        for z in cat.zones.iter().filter(|z| z.end_ms.is_none()) {
            if zone.is_some_and(|id| id != z.zone.curb_zone_id) {
                continue;
            }
            for id in &z.zone.objects {
                let Some(b) = road.layout.barriers.iter().find(|b| &b.barrier_id == id) else {
                    continue;
                };
                let Some(dates) = cat.objects.get(id) else {
                    continue;
                };
                if t.is_some_and(|t| dates.published_ms > t.timestamp_millis()) {
                    continue;
                }
                let Some(c) = b.polygon.centroid() else {
                    continue;
                };
                out.push(json!({
                    "curb_object_id": cds::object_id(id),
                    "geometry": point_json(c),
                    "curb_zone_id": z.zone.curb_zone_id,
                    "object_type": cds::object_type(b.kind),
                    "name": id.as_str(),
                    "object_shape": polygon_json(&b.polygon),
                    "published_date": dates.published_ms,
                    "last_updated_date": dates.last_updated_ms,
                }));
            }
        }
    }
    let updated = layouts_updated(&roads);
    Ok(envelope(&state, json!({"objects": out}), updated))
}

/// Policy query.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PolicyQuery {
    /// Comma-separated policy ids; all policies when absent.
    pub ids: Option<String>,
}

/// Curb Policies: what each bay kind, stay limit and enforced hours mean.
/// Public.
#[utoipa::path(get, path = "/cds/v1/curbs/policies", tag = "cds",
    params(PolicyQuery),
    responses((status = 200, description = "CDS envelope, `data.policies`", content_type = "application/vnd.cds+json;version=1.1"),
              (status = 400, body = super::problem::Problem), (status = 406, body = super::problem::Problem)))]
#[get("/curbs/policies")]
pub async fn list_policies(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<PolicyQuery>,
) -> Result<HttpResponse, ApiError> {
    negotiate(&req, JSON_TYPE)?;
    let wanted: Option<Vec<Uuid>> = query
        .ids
        .as_deref()
        .map(|s| {
            s.split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| parse_uuid("ids", p))
                .collect()
        })
        .transpose()?;
    let roads = catalogues(&state).await?;
    let mut all: BTreeMap<Uuid, Policy> = BTreeMap::new();
    for (_, cat) in &roads {
        for (id, p) in &cat.policies {
            let e = all.entry(*id).or_insert_with(|| p.clone());
            e.published_date = e.published_date.min(p.published_date);
        }
    }
    let out: Vec<&Policy> = all
        .values()
        .filter(|p| {
            wanted
                .as_ref()
                .is_none_or(|w| w.contains(&p.curb_policy_id))
        })
        .collect();
    let updated = layouts_updated(&roads);
    Ok(envelope(&state, json!({"policies": out}), updated))
}

/// One Curb Policy by id. Public.
#[utoipa::path(get, path = "/cds/v1/curbs/policies/{curb_policy_id}", tag = "cds",
    params(("curb_policy_id" = String, Path)),
    responses((status = 200, description = "CDS envelope, `data` the policy", content_type = "application/vnd.cds+json;version=1.1"),
              (status = 400, body = super::problem::Problem), (status = 404, body = super::problem::Problem),
              (status = 406, body = super::problem::Problem)))]
#[get("/curbs/policies/{curb_policy_id}")]
pub async fn get_policy(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    negotiate(&req, JSON_TYPE)?;
    let id = parse_uuid("curb_policy_id", &path)?;
    let roads = catalogues(&state).await?;
    let found = roads
        .iter()
        .filter_map(|(_, cat)| cat.policies.get(&id))
        .min_by_key(|p| p.published_date)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no curb policy {id}")))?;
    let updated = layouts_updated(&roads);
    Ok(envelope(&state, json!(found), updated))
}

/// The optional CDS endpoints kerbside does not serve: Curb Areas (it has
/// none), single spaces and objects (their lists answer), sensor status.
/// CDS asks for 501 Not Implemented.
pub async fn not_implemented(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotImplemented(format!(
        "{} is an optional CDS endpoint that kerbside does not serve",
        req.path()
    )))
}

/// The time range of the Events and Metrics queries (epoch ms, start
/// inclusive, end exclusive).
#[derive(Debug, Default, Clone, Copy)]
pub struct TimeRange {
    /// Start, inclusive; default 24 hours before `end_time`.
    pub start_time: Option<i64>,
    /// End, exclusive; default now.
    pub end_time: Option<i64>,
}

impl TimeRange {
    /// 400 for an empty or reversed range, or one wider than
    /// [`MAX_WINDOW_DAYS`].
    pub(super) fn window(
        &self,
        now: DateTime<Utc>,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
        let to = self
            .end_time
            .map(|t| instant("end_time", t))
            .transpose()?
            .unwrap_or(now);
        let from = self
            .start_time
            .map(|t| instant("start_time", t))
            .transpose()?
            .unwrap_or(to - Duration::hours(24));
        if from >= to {
            return Err(ApiError::BadRequest(
                "start_time must be before end_time".into(),
            ));
        }
        if to - from > Duration::days(MAX_WINDOW_DAYS) {
            return Err(ApiError::BadRequest(format!(
                "the range is wider than {MAX_WINDOW_DAYS} days; ask in parts"
            )));
        }
        Ok((from, to))
    }
}

/// Events query.
#[derive(Debug, Deserialize, IntoParams)]
pub struct EventQuery {
    /// Start, epoch ms, inclusive; default 24 hours before `end_time`.
    pub start_time: Option<i64>,
    /// End, epoch ms, exclusive; default now.
    pub end_time: Option<i64>,
    /// Curb Area id: kerbside publishes no areas, so it matches nothing.
    pub curb_area_id: Option<String>,
    pub curb_zone_id: Option<String>,
    pub curb_space_id: Option<String>,
    pub curb_object_id: Option<String>,
}

/// Where each bay was and which zone holds it, over the whole history
/// (a session's bay may have been retired since).
struct BayPlaces {
    road: crate::domain::ids::RoadId,
    centroid: HashMap<BayId, Point<f64>>,
    zone: HashMap<BayId, Uuid>,
}

fn bay_places(road: &RoadView, cat: &RoadCatalogue) -> BayPlaces {
    let mut centroid = HashMap::new();
    let mut zone = HashMap::new();
    for z in cat.zones.iter().rev() {
        for b in &z.zone.bays {
            zone.insert(b.clone(), z.zone.curb_zone_id);
        }
    }
    for z in cat.zones.iter().filter(|z| z.end_ms.is_none()) {
        for b in &z.zone.bays {
            zone.insert(b.clone(), z.zone.curb_zone_id);
        }
    }
    for b in &road.layout.bays {
        if let Some(c) = b.polygon.centroid() {
            centroid.insert(b.bay_id.clone(), c);
        }
    }
    BayPlaces {
        road: road.info.road_id.clone(),
        centroid,
        zone,
    }
}

/// One curb event, with what the filters look at.
struct Event {
    time: i64,
    zone: Option<Uuid>,
    space: Option<Uuid>,
    json: Value,
}

#[allow(clippy::too_many_arguments)]
fn event(
    kind: &str,
    what: &str,
    time: i64,
    published: i64,
    at: Point<f64>,
    bay: Option<&BayId>,
    places: &BayPlaces,
    source_type: &str,
) -> Event {
    let zone = bay.and_then(|b| places.zone.get(b).copied());
    let space = bay.map(cds::space_id);
    let mut v = json!({
        "event_id": cds::event_id(what),
        "event_type": kind,
        "event_location": {
            "type": "Feature",
            "properties": {"timestamp": time},
            "geometry": point_json(at),
        },
        "event_time": time,
        "event_publication_time": published.max(time),
        "data_source_type": source_type,
        "data_source_operator_name": AUTHOR,
    });
    if let Some(z) = zone {
        v["curb_zone_id"] = json!(z);
    }
    if let Some(s) = space {
        v["curb_space_id"] = json!(s);
    }
    v["data_source_device_id"] = json!(match bay {
        Some(b) => cds::bay_source_id(b),
        None => cds::road_source_id(&places.road),
    });
    Event {
        time,
        zone,
        space,
        json: v,
    }
}

fn source_type(source: Option<&str>) -> &'static str {
    match source {
        Some("sensor") => "in_ground",
        _ => "in_person",
    }
}

/// Reads every parking session of a road overlapping `[from, to)`, and
/// those that ended at `from` exactly (their end is in the range).
fn all_sessions(
    store: &crate::store::Store,
    road: &crate::domain::ids::RoadId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<crate::store::SessionRecord>, crate::store::StoreError> {
    const PAGE: i64 = 10_000;
    let mut out = Vec::new();
    let mut after: Option<SessionCursor> = None;
    loop {
        let page = store.sessions(road, from - Duration::milliseconds(1), to, after, PAGE)?;
        let full = page.len() as i64 == PAGE;
        after = page.last().map(|s| SessionCursor {
            started_at_ms: s.started_at.timestamp_millis(),
            session_id: s.session_id,
        });
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

/// Curb Events: `park_start`/`park_end` from sessions, `comms_lost`/
/// `comms_restored` from bays' silences, `vehicle_violation_start`/`_end`
/// from violations, most recent first. Any token.
#[utoipa::path(get, path = "/cds/v1/events/events", tag = "cds",
    params(EventQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "CDS envelope, `data.events`", content_type = "application/vnd.cds+json;version=1.1"),
              (status = 400, body = super::problem::Problem), (status = 401, body = super::problem::Problem),
              (status = 406, body = super::problem::Problem)))]
#[get("/events/events")]
pub async fn list_events(
    _caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<EventQuery>,
) -> Result<HttpResponse, ApiError> {
    negotiate(&req, JSON_TYPE)?;
    let now = state.clock.now();
    let (from, to) = query.range().window(now)?;
    let parse = |n: &str, v: &Option<String>| v.as_deref().map(|s| parse_uuid(n, s)).transpose();
    let area = parse("curb_area_id", &query.curb_area_id)?;
    let zone = parse("curb_zone_id", &query.curb_zone_id)?;
    let space = parse("curb_space_id", &query.curb_space_id)?;
    let object = parse("curb_object_id", &query.curb_object_id)?;
    let roads = catalogues(&state).await?;
    let staleness = state.street.staleness();
    let (lo, hi) = (from.timestamp_millis(), to.timestamp_millis());
    let within = |t: i64| t >= lo && t < hi;
    let mut out: Vec<Event> = Vec::new();
    for (road, cat) in &roads {
        if area.is_some() || object.is_some() {
            // No event of kerbside happens at an area or an object.
            break;
        }
        let places = bay_places(road, cat);
        let road_id = road.info.road_id.clone();
        let bays: Vec<BayId> = road.layout.bays.iter().map(|b| b.bay_id.clone()).collect();
        let store = state.store.clone();
        let (sessions, times, before, violations) = blocking(move || {
            let sessions = all_sessions(&store, &road_id, from, to)?;
            let times = store.bay_event_times(&bays, from - staleness, to)?;
            let before = store.last_event_before(&bays, from - staleness)?;
            let violations = store.violations_between(&road_id, from, to)?;
            Ok((sessions, times, before, violations))
        })
        .await?;
        let centre = |b: &BayId| places.centroid.get(b).copied();
        for s in &sessions {
            let Ok(bay) = BayId::parse(&s.bay_id) else {
                continue;
            };
            let Some(at) = centre(&bay) else {
                continue;
            };
            let src = source_type(Some(&s.source));
            let id = s.session_id;
            let start = s.started_at.timestamp_millis();
            if within(start) {
                let mut e = event(
                    "park_start",
                    &format!("session:{id}:start"),
                    start,
                    start,
                    at,
                    Some(&bay),
                    &places,
                    src,
                );
                e.json["event_session_id"] = json!(cds::session_uuid(id));
                out.push(e);
            }
            if let Some(end) = s.ended_at.map(|t| t.timestamp_millis())
                && within(end)
            {
                let mut e = event(
                    "park_end",
                    &format!("session:{id}:end"),
                    end,
                    end,
                    at,
                    Some(&bay),
                    &places,
                    src,
                );
                e.json["event_session_id"] = json!(cds::session_uuid(id));
                out.push(e);
            }
        }
        let mut by_bay: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for (b, t) in &times {
            by_bay.entry(b.as_str()).or_default().push(*t);
        }
        let before: HashMap<&str, i64> = before.iter().map(|(b, t)| (b.as_str(), *t)).collect();
        for bay in &road.layout.bays {
            let id = bay.bay_id.as_str();
            let heard = by_bay.get(id).map(Vec::as_slice).unwrap_or(&[]);
            let changes = cds::comms_changes(
                before.get(id).copied(),
                heard,
                staleness.num_milliseconds(),
                lo,
                hi,
                now.timestamp_millis(),
            );
            let Some(at) = centre(&bay.bay_id) else {
                continue;
            };
            for (c, t) in changes {
                let (kind, online) = match c {
                    Comms::Lost => ("comms_lost", false),
                    Comms::Restored => ("comms_restored", true),
                };
                let mut e = event(
                    kind,
                    &format!("{kind}:{id}:{t}"),
                    t,
                    t,
                    at,
                    Some(&bay.bay_id),
                    &places,
                    "in_ground",
                );
                e.json["sensor_status_is_online"] = json!(online);
                e.json["sensor_status_is_commissioned"] = json!(true);
                out.push(e);
            }
        }
        for v in &violations {
            let bay = v.bay_id.as_deref().and_then(|b| BayId::parse(b).ok());
            let at = v
                .position
                .map(|(lon, lat)| Point::new(lon, lat))
                .or_else(|| bay.as_ref().and_then(centre));
            let Some(at) = at else {
                continue;
            };
            let src = source_type(v.source.as_deref());
            let id = &v.violation_id;
            let detected = v.detected_at.timestamp_millis();
            let mut told = Vec::new();
            if within(detected) {
                told.push(("vehicle_violation_start", detected));
            }
            if let Some(end) = v.ended_at.map(|t| t.timestamp_millis())
                && within(end)
            {
                told.push(("vehicle_violation_end", end));
            }
            for (kind, t) in told {
                let mut e = event(
                    kind,
                    &format!("violation:{id}:{kind}"),
                    t,
                    detected,
                    at,
                    bay.as_ref(),
                    &places,
                    src,
                );
                e.json["enforcement"] = json!({
                    "enforcement_id": cds::event_id(&format!("violation:{id}")),
                    "violation_name": v.kind,
                });
                out.push(e);
            }
        }
    }
    out.retain(|e| {
        zone.is_none_or(|z| e.zone == Some(z)) && space.is_none_or(|s| e.space == Some(s))
    });
    out.sort_by(|a, b| {
        b.time.cmp(&a.time).then_with(|| {
            a.json["event_id"]
                .as_str()
                .cmp(&b.json["event_id"].as_str())
        })
    });
    let events: Vec<Value> = out.into_iter().map(|e| e.json).collect();
    Ok(envelope(
        &state,
        json!({"events": events}),
        now.timestamp_millis(),
    ))
}

/// Sessions query.
#[derive(Debug, Deserialize, IntoParams)]
pub struct SessionQuery {
    /// `zone`, `space` (or `area`, `object`, which match nothing here);
    /// with `curb_place_id`.
    pub curb_place_type: Option<String>,
    pub curb_place_id: Option<String>,
    /// Start, epoch ms, inclusive; default 24 hours before `end_time`.
    pub start_time: Option<i64>,
    /// End, epoch ms, exclusive; default now.
    pub end_time: Option<i64>,
    /// Bounding box, degrees: all four or none.
    pub min_lat: Option<f64>,
    pub min_lng: Option<f64>,
    pub max_lat: Option<f64>,
    pub max_lng: Option<f64>,
    /// A point, degrees, and a radius in centimetres: all three or none.
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    pub radius: Option<f64>,
}

/// The Metrics API's sessions: one CSV row per parking session that
/// started in the range. Any token.
#[utoipa::path(get, path = "/cds/v1/metrics/sessions", tag = "cds",
    params(SessionQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "CSV, the CDS Session columns", content_type = "application/vnd.cds+csv;version=1.1"),
              (status = 400, body = super::problem::Problem), (status = 401, body = super::problem::Problem),
              (status = 406, body = super::problem::Problem)))]
#[get("/metrics/sessions")]
pub async fn metric_sessions(
    _caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<SessionQuery>,
) -> Result<HttpResponse, ApiError> {
    negotiate(&req, CSV_TYPE)?;
    let now = state.clock.now();
    let (from, to) = query.range().window(now)?;
    let place = query.place()?;
    let wanted = match (
        query.curb_place_type.as_deref(),
        query.curb_place_id.as_deref(),
    ) {
        (None, None) => None,
        (Some(kind @ ("area" | "zone" | "space" | "object")), Some(id)) => {
            Some((kind, parse_uuid("curb_place_id", id)?))
        }
        (Some(kind), Some(_)) => {
            return Err(ApiError::BadRequest(format!(
                "curb_place_type {kind:?} is not area, zone, space or object"
            )));
        }
        _ => {
            return Err(ApiError::BadRequest(
                "curb_place_type and curb_place_id go together".into(),
            ));
        }
    };
    let roads = catalogues(&state).await?;
    let mut rows: Vec<SessionRow> = Vec::new();
    for (road, cat) in &roads {
        let places = bay_places(road, cat);
        // The place filter is on zones (CDS: "only return Curb Zones that
        // intersect"): a session counts when its bay's zone is admitted.
        let admitted: Vec<Uuid> = filter_place(cat.zones.iter().collect::<Vec<_>>(), &place, |z| {
            &z.zone.geometry
        })
        .into_iter()
        .map(|z| z.zone.curb_zone_id)
        .collect();
        let store = state.store.clone();
        let road_id = road.info.road_id.clone();
        let sessions = blocking(move || all_sessions(&store, &road_id, from, to)).await?;
        for s in sessions {
            if s.started_at < from {
                continue;
            }
            let Ok(bay) = BayId::parse(&s.bay_id) else {
                continue;
            };
            let Some(at) = places.centroid.get(&bay).copied() else {
                continue;
            };
            let zone = places.zone.get(&bay).copied();
            if !zone.is_some_and(|z| admitted.contains(&z)) {
                continue;
            }
            let space = cds::space_id(&bay);
            match wanted {
                Some(("zone", id)) if zone != Some(id) => continue,
                Some(("space", id)) if space != id => continue,
                Some(("area" | "object", _)) => continue,
                _ => {}
            }
            let id = s.session_id;
            rows.push(SessionRow {
                event_session_id: cds::session_uuid(id),
                event_id_start: cds::event_id(&format!("session:{id}:start")),
                event_id_end: s
                    .ended_at
                    .map(|_| cds::event_id(&format!("session:{id}:end"))),
                location: (at.y(), at.x()),
                start_ms: s.started_at.timestamp_millis(),
                end_ms: s.ended_at.map(|t| t.timestamp_millis()),
                curb_zone_id: zone,
                curb_space_id: space,
            });
        }
    }
    rows.sort_by_key(|r| (r.start_ms, r.event_session_id));
    Ok(HttpResponse::Ok()
        .content_type(cds::CSV_MEDIA)
        .body(cds::sessions_csv(&rows)))
}

/// Aggregates query.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AggregateQuery {
    /// `zone` or `space` (or `area`, `object`, which match nothing here);
    /// with `curb_place_id`.
    pub curb_place_type: Option<String>,
    pub curb_place_id: Option<String>,
    /// `total_sessions`, `turnover`, `average_dwell_time` or
    /// `occupancy_percent`; default all four.
    pub metric_type: Option<String>,
    /// Start, epoch ms, inclusive, on the hour; default 24 hours before
    /// `end_time`.
    pub start_time: Option<i64>,
    /// End, epoch ms, exclusive, on the hour; default the end of the
    /// current hour.
    pub end_time: Option<i64>,
    /// Bounding box, degrees: all four or none.
    pub min_lat: Option<f64>,
    pub min_lng: Option<f64>,
    pub max_lat: Option<f64>,
    pub max_lng: Option<f64>,
    /// A point, degrees, and a radius in centimetres: all three or none.
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    pub radius: Option<f64>,
}

/// The `curb_place_type`/`curb_place_id` pair: both or neither.
fn wanted_place(
    kind: Option<&str>,
    id: Option<&str>,
) -> Result<Option<(&'static str, Uuid)>, ApiError> {
    match (kind, id) {
        (None, None) => Ok(None),
        (Some(kind), Some(id)) => {
            let kind = ["area", "zone", "space", "object"]
                .into_iter()
                .find(|k| *k == kind)
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "curb_place_type {kind:?} is not area, zone, space or object"
                    ))
                })?;
            Ok(Some((kind, parse_uuid("curb_place_id", id)?)))
        }
        _ => Err(ApiError::BadRequest(
            "curb_place_type and curb_place_id go together".into(),
        )),
    }
}

/// The Metrics API's aggregates: per curb zone and per space, one CSV row
/// per metric and hour, from the hourly history. Any token.
#[utoipa::path(get, path = "/cds/v1/metrics/aggregates", tag = "cds",
    params(AggregateQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "CSV, the CDS Aggregate columns", content_type = "application/vnd.cds+csv;version=1.1"),
              (status = 400, body = super::problem::Problem), (status = 401, body = super::problem::Problem),
              (status = 406, body = super::problem::Problem)))]
#[get("/metrics/aggregates")]
pub async fn metric_aggregates(
    _caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<AggregateQuery>,
) -> Result<HttpResponse, ApiError> {
    use crate::domain::history::{HOUR_MS, ceil_hour};
    negotiate(&req, CSV_TYPE)?;
    let now = state.clock.now();
    for (name, t) in [
        ("start_time", query.start_time),
        ("end_time", query.end_time),
    ] {
        if let Some(t) = t
            && t.rem_euclid(HOUR_MS) != 0
        {
            return Err(ApiError::BadRequest(format!(
                "{name} {t} is not on the hour: aggregates are hourly"
            )));
        }
    }
    let range = TimeRange {
        start_time: query.start_time,
        end_time: Some(
            query
                .end_time
                .unwrap_or_else(|| ceil_hour(now.timestamp_millis())),
        ),
    };
    let (from, to) = range.window(now)?;
    let place = place_of!(query).place()?;
    let wanted = wanted_place(
        query.curb_place_type.as_deref(),
        query.curb_place_id.as_deref(),
    )?;
    let metrics: Vec<cds::MetricType> = match query.metric_type.as_deref() {
        None => cds::MetricType::ALL.to_vec(),
        Some(m) => vec![cds::MetricType::parse(m).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "metric_type {m:?} is not total_sessions, turnover, average_dwell_time \
                 or occupancy_percent"
            ))
        })?],
    };
    let tz = state.timezone;
    let roads = catalogues(&state).await?;
    let (mut zones, mut spaces) = (Vec::new(), Vec::new());
    for (road, cat) in &roads {
        let admitted: Vec<&DatedZone> =
            filter_place(cat.zones.iter().collect::<Vec<_>>(), &place, |z| {
                &z.zone.geometry
            });
        if admitted.is_empty() {
            continue;
        }
        let places = bay_places(road, cat);
        let (store, road_id, staleness) = (
            state.store.clone(),
            road.info.road_id.clone(),
            state.street.staleness(),
        );
        let by_bay: HashMap<BayId, Vec<crate::domain::history::Hour>> =
            blocking(move || store.history_hours_by_bay(&road_id, from, to, now, staleness))
                .await?
                .into_iter()
                .filter_map(|(id, hours)| BayId::parse(&id).ok().map(|b| (b, hours)))
                .collect();
        for z in &admitted {
            let id = z.zone.curb_zone_id;
            if matches!(wanted, Some((k, w)) if k != "zone" || w != id) {
                continue;
            }
            // A zone counts its bays while it is published.
            let mut hours = cds::sum_hours(
                z.zone
                    .bays
                    .iter()
                    .filter_map(|b| by_bay.get(b).map(Vec::as_slice)),
            );
            hours.retain(|h| valid_at(z, h.start_ms) || valid_at(z, h.start_ms + HOUR_MS - 1));
            if !zones.iter().any(|(i, _)| *i == id) {
                zones.push((id, hours));
            }
        }
        let admitted_ids: Vec<Uuid> = admitted.iter().map(|z| z.zone.curb_zone_id).collect();
        let mut bays: Vec<&BayId> = by_bay.keys().collect();
        bays.sort();
        for bay in bays {
            if !places
                .zone
                .get(bay)
                .is_some_and(|z| admitted_ids.contains(z))
            {
                continue;
            }
            let id = cds::space_id(bay);
            if matches!(wanted, Some((k, w)) if k != "space" || w != id) {
                continue;
            }
            spaces.push((id, by_bay[bay].clone()));
        }
    }
    let mut rows = Vec::new();
    for (id, hours) in &zones {
        rows.extend(cds::aggregate_rows("zone", *id, hours, &metrics, &tz));
    }
    for (id, hours) in &spaces {
        rows.extend(cds::aggregate_rows("space", *id, hours, &metrics, &tz));
    }
    Ok(HttpResponse::Ok()
        .content_type(cds::CSV_MEDIA)
        .body(cds::aggregates_csv(&rows)))
}

/// The place filter of each query that has one.
macro_rules! with_place {
    ($($t:ty),*) => {$(
        impl $t {
            /// The box or circle asked for; 400 when it is malformed.
            pub(super) fn place(&self) -> Result<Place, ApiError> {
                place_of!(self).place()
            }
        }
    )*};
}
with_place!(ZoneQuery, SpaceQuery, SessionQuery);

/// The time range of each query that has one.
macro_rules! with_range {
    ($($t:ty),*) => {$(
        impl $t {
            /// The `start_time`/`end_time` asked for, unchecked.
            pub(super) fn range(&self) -> TimeRange {
                range_of!(self)
            }
        }
    )*};
}
with_range!(EventQuery, SessionQuery);
