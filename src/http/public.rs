//! The public's endpoints: nearby free spaces and per-road free counts.
//! They carry no plate, device or person, answer CORS requests from any
//! origin, may be cached for a few seconds, and are rate limited per client.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, get, web};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::problem::ApiError;
use crate::domain::events::Position;
use crate::domain::layout::BayKind;
use crate::domain::occupancy::BayStatus;
use crate::spatial::gcj02::{gcj02_to_wgs84, wgs84_to_gcj02};

/// Default and largest search radius, metres.
pub const RADIUS_DEFAULT_M: f64 = 500.0;
pub const RADIUS_MAX_M: f64 = 5000.0;
/// Default and largest number of bays in an answer.
pub const LIMIT_DEFAULT: usize = 20;
pub const LIMIT_MAX: usize = 100;
/// How long a public answer may be cached, seconds.
pub const MAX_AGE_S: u32 = 5;

/// A token bucket per client address: `per_minute` requests a minute on
/// average, bursts of up to `burst`.
pub struct RateLimiter {
    per_minute: u32,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
    /// Proxies whose `X-Forwarded-For` is believed; see [`client_address`].
    trusted_proxies: Vec<IpNet>,
}

impl RateLimiter {
    /// A limiter allowing `per_minute` requests a minute per client.
    pub fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_minute,
            burst: f64::from(per_minute.clamp(1, 120)),
            buckets: Mutex::new(HashMap::new()),
            trusted_proxies: Vec::new(),
        }
    }

    /// The same limiter, counting a request from one of `proxies` against
    /// the client its `X-Forwarded-For` names.
    pub fn trusting(mut self, proxies: Vec<IpNet>) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// Takes one request for `ip` at `now`; `Err` holds the seconds to wait.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let rate = f64::from(self.per_minute) / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 100_000 {
            // Forget full buckets: they hold nothing a new one would not.
            let burst = self.burst;
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

/// The address a request is counted against: the peer's, unless the peer
/// is one of the `trusted` proxies; then the right-most address of
/// `forwarded_for` (the `X-Forwarded-For` headers in order; each proxy
/// appends the address it heard from) that is not itself a trusted proxy.
/// Everything left of that was written by the client and may be forged.
/// If every address is a trusted proxy, the left-most counts; an entry that
/// is not an address stops the walk at the last proxy before it.
pub fn client_address(peer: IpAddr, forwarded_for: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(&ip));
    let mut client = peer.to_canonical();
    if !is_trusted(client) {
        return client;
    }
    for entry in forwarded_for.iter().rev().flat_map(|h| h.rsplit(',')) {
        let Some(ip) = forwarded_address(entry) else {
            return client;
        };
        client = ip.to_canonical();
        if !is_trusted(client) {
            return client;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, perhaps with a port
/// (`203.0.113.7`, `203.0.113.7:4711`, `2001:db8::7`, `[2001:db8::7]:4711`).
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

/// Counts the request against its client's bucket: 429 with the seconds to
/// wait when it is empty. Every public endpoint that costs more than a
/// lookup calls this first.
pub(super) fn admit(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    let peer = req
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let trusted = &state.limiter.trusted_proxies;
    let ip = if trusted.is_empty() {
        peer
    } else {
        let forwarded: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .collect();
        client_address(peer, &forwarded, trusted)
    };
    state
        .limiter
        .check(ip, Instant::now())
        .map_err(|retry_after| ApiError::TooManyRequests { retry_after })
}

/// Marks an answer cacheable by anyone for `max_age_s` seconds; `immutable`
/// when it can never change.
pub(super) fn cacheable(mut res: HttpResponse, max_age_s: u32, immutable: bool) -> HttpResponse {
    use actix_web::http::header::{CACHE_CONTROL, HeaderValue};
    let value = if immutable {
        format!("public, max-age={max_age_s}, immutable")
    } else {
        format!("public, max-age={max_age_s}")
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        res.headers_mut().insert(CACHE_CONTROL, v);
    }
    res
}

/// Lets a page of any origin read the answer (a kiosk's, a city's).
pub(super) fn cors(mut res: HttpResponse) -> HttpResponse {
    use actix_web::http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue};
    res.headers_mut()
        .insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    res
}

/// Marks a public answer: any origin may read it, anyone may cache it for
/// [`MAX_AGE_S`] seconds.
pub(super) fn public(mut res: HttpResponse) -> HttpResponse {
    let h = res.headers_mut();
    use actix_web::http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, HeaderValue};
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={MAX_AGE_S}")) {
        h.insert(CACHE_CONTROL, v);
    }
    res
}

/// Where to look and what for.
#[derive(Debug, Deserialize, IntoParams)]
pub struct FreeQuery {
    /// Longitude of the point to search from, degrees.
    pub lon: Option<String>,
    /// Latitude of the point to search from, degrees.
    pub lat: Option<String>,
    /// Search radius in metres, 1 to 5000 (default 500).
    pub radius_m: Option<String>,
    /// Most bays to return, 1 to 100 (default 20).
    pub limit: Option<String>,
    /// Only bays of this kind.
    pub kind: Option<String>,
    /// `wgs84` (default) or `gcj02`: the datum of the point, and of the answer.
    pub crs: Option<String>,
}

fn number(
    name: &str,
    v: Option<&str>,
    range: std::ops::RangeInclusive<f64>,
) -> Result<Option<f64>, ApiError> {
    let Some(s) = v else { return Ok(None) };
    let x: f64 = s
        .trim()
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{name} {s:?} is not a number")))?;
    if !x.is_finite() || !range.contains(&x) {
        return Err(ApiError::BadRequest(format!(
            "{name} {x} is out of range ({} to {})",
            range.start(),
            range.end()
        )));
    }
    Ok(Some(x))
}

/// A free-space search, checked: the point in WGS 84 whatever datum it was
/// sent in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct FreeSearch {
    pub lon: f64,
    pub lat: f64,
    pub radius: f64,
    pub limit: usize,
    pub kind: Option<BayKind>,
    /// The point came, and the answer goes, in GCJ-02.
    pub gcj: bool,
}

impl FreeQuery {
    /// Checks the query: 400 for a missing, unreadable or out-of-range value.
    pub(super) fn search(&self) -> Result<FreeSearch, ApiError> {
        let lon = number("lon", self.lon.as_deref(), -180.0..=180.0)?
            .ok_or_else(|| ApiError::BadRequest("lon is required".into()))?;
        let lat = number("lat", self.lat.as_deref(), -90.0..=90.0)?
            .ok_or_else(|| ApiError::BadRequest("lat is required".into()))?;
        let radius = number("radius_m", self.radius_m.as_deref(), 1.0..=RADIUS_MAX_M)?
            .unwrap_or(RADIUS_DEFAULT_M);
        let limit = number("limit", self.limit.as_deref(), 1.0..=LIMIT_MAX as f64)?
            .map_or(LIMIT_DEFAULT, |l| l as usize);
        let kind = self
            .kind
            .as_deref()
            .map(|k| {
                BayKind::parse(k)
                    .ok_or_else(|| ApiError::BadRequest(format!("kind {k:?} is not a bay kind")))
            })
            .transpose()?;
        let gcj = match self.crs.as_deref() {
            None | Some("wgs84") => false,
            Some("gcj02") => true,
            Some(c) => {
                return Err(ApiError::BadRequest(format!(
                    "crs {c:?} is not wgs84 or gcj02"
                )));
            }
        };
        let (lon, lat) = if gcj {
            gcj02_to_wgs84(lon, lat)
        } else {
            (lon, lat)
        };
        Ok(FreeSearch {
            lon,
            lat,
            radius,
            limit,
            kind,
            gcj,
        })
    }
}

/// Free bays nearest first from a point, with distance, kind and maximum
/// stay; nothing about anyone's vehicle. Public.
#[utoipa::path(get, path = "/v1/public/free-spaces", tag = "public",
    params(FreeQuery),
    responses((status = 200, description = "A GeoJSON FeatureCollection of free bays, nearest first", body = Object),
              (status = 400, body = super::problem::Problem), (status = 429, body = super::problem::Problem)))]
#[get("/free-spaces")]
pub async fn free_spaces(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<FreeQuery>,
) -> Result<HttpResponse, ApiError> {
    admit(&state, &req)?;
    let FreeSearch {
        lon,
        lat,
        radius,
        limit,
        kind,
        gcj,
    } = query.search()?;

    let reports = state.street.reports_at(state.clock.now());
    let near = reports
        .map()
        .nearest_bays(Position { lon, lat }, radius, limit, |o, b| {
            kind.is_none_or(|k| b.kind == k) && reports.of_ordinal(o).status == BayStatus::Free
        });
    let features: Vec<FreeFeature<'_>> = near
        .into_iter()
        .map(|(road, bay, d)| FreeFeature {
            kind: "Feature",
            id: bay.bay_id.as_str(),
            geometry: PolygonGeometry {
                kind: "Polygon",
                coordinates: std::iter::once(bay.polygon.exterior())
                    .chain(bay.polygon.interiors())
                    .map(|ring| {
                        ring.0
                            .iter()
                            .map(|c| {
                                if gcj {
                                    let (x, y) = wgs84_to_gcj02(c.x, c.y);
                                    [x, y]
                                } else {
                                    [c.x, c.y]
                                }
                            })
                            .collect()
                    })
                    .collect(),
            },
            properties: FreeProperties {
                bay_id: bay.bay_id.as_str(),
                road_id: road.info.road_id.as_str(),
                road_name: &road.layout.road.name,
                kind: bay.kind.as_str(),
                max_stay_minutes: bay.max_stay_minutes,
                distance_m: (d * 10.0).round() / 10.0,
            },
        })
        .collect();
    let response = public(HttpResponse::Ok().json(FreeSpaces {
        kind: "FeatureCollection",
        features,
    }));
    drop(reports);
    Ok(response)
}

/// The free-spaces answer, written straight from the street (a GeoJSON
/// FeatureCollection; each bay a Feature with a Polygon).
#[derive(Serialize)]
struct FreeSpaces<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    features: Vec<FreeFeature<'a>>,
}

#[derive(Serialize)]
struct FreeFeature<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    geometry: PolygonGeometry,
    properties: FreeProperties<'a>,
}

#[derive(Serialize)]
struct PolygonGeometry {
    #[serde(rename = "type")]
    kind: &'static str,
    coordinates: Vec<Vec<[f64; 2]>>,
}

/// The public fields of a free bay, and nothing else.
#[derive(Serialize)]
struct FreeProperties<'a> {
    bay_id: &'a str,
    road_id: &'a str,
    road_name: &'a str,
    kind: &'static str,
    max_stay_minutes: Option<u32>,
    /// Metres from the query point to the bay's outline (0 inside), to 0.1 m.
    distance_m: f64,
}

/// Free counts of one road.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicRoad {
    pub road_id: String,
    pub name: String,
    pub name_en: Option<String>,
    pub bays: u32,
    pub free: u32,
    pub occupied: u32,
    pub unknown: u32,
}

/// `GET /v1/public/roads`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicRoads {
    pub roads: Vec<PublicRoad>,
}

/// Every road with its free, occupied and unknown counts, for an app's list
/// view. Public.
#[utoipa::path(get, path = "/v1/public/roads", tag = "public",
    responses((status = 200, body = PublicRoads), (status = 429, body = super::problem::Problem)))]
#[get("/roads")]
pub async fn public_roads(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    admit(&state, &req)?;
    let now = state.clock.now();
    let roads = state
        .street
        .map()
        .roads
        .values()
        .map(|v| {
            let c = state.street.counts(v, now).all;
            PublicRoad {
                road_id: v.info.road_id.to_string(),
                name: v.layout.road.name.clone(),
                name_en: v.layout.road.name_en.clone(),
                bays: c.bays,
                free: c.free,
                occupied: c.occupied,
                unknown: c.unknown,
            }
        })
        .collect();
    Ok(public(HttpResponse::Ok().json(PublicRoads { roads })))
}

/// CORS preflight for the public endpoints.
pub async fn preflight() -> HttpResponse {
    use actix_web::http::header::{
        ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
        ACCESS_CONTROL_MAX_AGE,
    };
    HttpResponse::NoContent()
        .insert_header((ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .insert_header((ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
        .insert_header((ACCESS_CONTROL_ALLOW_HEADERS, "Content-Type"))
        .insert_header((ACCESS_CONTROL_MAX_AGE, "86400"))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = nets(&["10.0.0.0/8"]);
        let peer = ip("198.51.100.9");
        assert_eq!(client_address(peer, &["203.0.113.7"], &trusted), peer);
        assert_eq!(client_address(peer, &["203.0.113.7"], &[]), peer);
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_address_counts() {
        let trusted = nets(&["10.0.0.0/8", "2001:db8::/32"]);
        let proxy = ip("10.0.0.2");
        // The client forged the first entry; the proxies appended the rest.
        assert_eq!(
            client_address(proxy, &["1.2.3.4, 203.0.113.7, 10.0.0.1"], &trusted),
            ip("203.0.113.7")
        );
        // Several headers are one list, in order.
        assert_eq!(
            client_address(
                proxy,
                &["1.2.3.4", "203.0.113.7:4711", "10.0.0.1"],
                &trusted
            ),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_address(ip("2001:db8::1"), &["[2001:db8:ffff::1]:80"], &trusted),
            ip("2001:db8:ffff::1")
        );
        // IPv4 peers on an IPv6 socket are matched as IPv4.
        assert_eq!(
            client_address(ip("::ffff:10.0.0.2"), &["203.0.113.7"], &trusted),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn without_a_usable_forwarded_address_the_nearest_proxy_counts() {
        let trusted = nets(&["10.0.0.0/8"]);
        let proxy = ip("10.0.0.2");
        assert_eq!(client_address(proxy, &[], &trusted), proxy);
        assert_eq!(
            client_address(proxy, &["203.0.113.7, unknown, 10.0.0.1"], &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_address(proxy, &["10.0.0.9, 10.0.0.1"], &trusted),
            ip("10.0.0.9"),
            "all proxies: the left-most"
        );
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let l = RateLimiter::new(60);
        let ip = IpAddr::from([127, 0, 0, 1]);
        let t0 = Instant::now();
        for _ in 0..60 {
            assert!(l.check(ip, t0).is_ok());
        }
        assert_eq!(l.check(ip, t0), Err(1));
        assert!(l.check(ip, t0 + Duration::from_secs(1)).is_ok());
        assert!(
            l.check(IpAddr::from([127, 0, 0, 2]), t0).is_ok(),
            "clients are counted apart"
        );
    }
}
