//! Cases (contract 6.4): the parties that answer for a frontage, the cases
//! they are told of, and the public's complaints that open them.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::Caller;
use super::problem::{ApiError, blocking};
use super::violations::PositionView;
use crate::domain::auth::Role;
use crate::domain::cases::{
    self as rules, COMPLAINT_ROAD_WITHIN_M, CaseKind, CaseSource, MAX_COMPLAINT_CHARS,
    MAX_NOTE_CHARS, PartyInput,
};
use crate::domain::events::{EventType, Position};
use crate::store::{
    CaseDetail, CaseFilter, CaseRecord, ComplaintRecord, DEFAULT_DEADLINE_MINUTES, NewCase,
    NewComplaint, NewParty, PartyRecord, Resolved, StoreError,
};
use crate::street::Placement;

/// Largest body taken by these endpoints, bytes.
const MAX_BODY_BYTES: usize = 64 * 1024;

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "the body has {} bytes; at most {MAX_BODY_BYTES} are taken",
            body.len()
        )));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("bad JSON body: {e}")))
}

/// A party as listed: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartyView {
    pub party_id: String,
    pub name: String,
    /// `shop`, `site`, `property`, `operator`, `enforcement` or `other`.
    pub kind: &'static str,
    /// GeoJSON Polygon (WGS 84); null for enforcement.
    #[schema(value_type = Option<Object>)]
    pub area: Option<Value>,
    /// With the values of its query and any user part starred out: a group
    /// robot's key is a credential.
    pub webhook_url: String,
    /// `json`, `wecom` or `dingtalk`.
    pub webhook_format: &'static str,
    /// Minutes a notified party has before its case escalates.
    pub deadline_minutes: u32,
    pub created_at: DateTime<Utc>,
}

impl From<PartyRecord> for PartyView {
    fn from(p: PartyRecord) -> Self {
        PartyView {
            party_id: p.party_id,
            name: p.name,
            kind: p.kind.as_str(),
            area: p.area,
            webhook_url: rules::redact_url(&p.webhook_url),
            webhook_format: p.webhook_format.as_str(),
            deadline_minutes: p.deadline_minutes,
            created_at: p.created_at,
        }
    }
}

/// A party just added, with its webhook secret (shown this once).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedParty {
    #[serde(flatten)]
    pub party: PartyView,
    /// Keys the HMAC-SHA256 in `X-Kerbside-Signature`; not shown again.
    pub webhook_secret: String,
}

/// `GET /v1/parties`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartiesResponse {
    pub parties: Vec<PartyView>,
}

/// Checks a party body and adds it with a fresh secret; shared with
/// `kerbside party add`. `Err` is the message for a 422 or the terminal.
pub fn new_party(input: PartyInput) -> Result<NewParty, String> {
    Ok(NewParty {
        spec: rules::check_party(input, DEFAULT_DEADLINE_MINUTES)?,
        webhook_secret: rules::webhook_secret(),
    })
}

/// Adds a party. Admins.
#[utoipa::path(post, path = "/v1/parties", tag = "cases", request_body = Object,
    security(("bearer" = [])),
    responses((status = 201, body = CreatedParty), (status = 400, body = super::problem::Problem),
              (status = 401, body = super::problem::Problem), (status = 403, body = super::problem::Problem),
              (status = 409, body = super::problem::Problem), (status = 422, body = super::problem::Problem)))]
#[post("/parties")]
pub async fn add_party(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let input: PartyInput = json_body(&body)?;
    let party = new_party(input).map_err(ApiError::Unprocessable)?;
    let secret = party.webhook_secret.clone();
    let id = party.spec.party_id.clone();
    let store = state.store.clone();
    let now = state.clock.now();
    match blocking(move || store.add_party(&party, now)).await {
        Ok(record) => {
            tracing::info!(party = %record.party_id, kind = record.kind.as_str(), by = %caller.name, "party added");
            Ok(HttpResponse::Created().json(CreatedParty {
                party: record.into(),
                webhook_secret: secret,
            }))
        }
        Err(ApiError::Store(StoreError::PartyExists(_))) => Err(ApiError::Conflict(format!(
            "party {id} is already registered"
        ))),
        Err(e) => Err(e),
    }
}

/// Every party, without secrets. Admins and wardens.
#[utoipa::path(get, path = "/v1/parties", tag = "cases", security(("bearer" = [])),
    responses((status = 200, body = PartiesResponse), (status = 401, body = super::problem::Problem),
              (status = 403, body = super::problem::Problem)))]
#[get("/parties")]
pub async fn list_parties(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin, Role::Warden])?;
    let store = state.store.clone();
    let parties = blocking(move || store.parties()).await?;
    Ok(HttpResponse::Ok().json(PartiesResponse {
        parties: parties.into_iter().map(PartyView::from).collect(),
    }))
}

/// A position in a request body: `{"lon", "lat"}` degrees.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PositionInput {
    pub lon: f64,
    pub lat: f64,
}

/// `wgs84` (default) or `gcj02` (a point from an Amap or Tencent map),
/// as WGS 84.
fn position(p: &PositionInput, crs: Option<&str>) -> Result<Position, ApiError> {
    let p = rules::check_position(p.lon, p.lat).map_err(ApiError::Unprocessable)?;
    match crs {
        None | Some("wgs84") => Ok(p),
        Some("gcj02") => {
            let (lon, lat) = crate::spatial::gcj02::gcj02_to_wgs84(p.lon, p.lat);
            Ok(Position { lon, lat })
        }
        Some(c) => Err(ApiError::Unprocessable(format!(
            "crs {c:?} is not wgs84 or gcj02"
        ))),
    }
}

fn check_optional_text(name: &str, s: Option<&str>, max: usize) -> Result<(), ApiError> {
    match s {
        Some(s) => rules::check_text(name, s, max).map_err(ApiError::Unprocessable),
        None => Ok(()),
    }
}

/// A case as wardens and planners see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseView {
    pub case_id: String,
    /// `footway_parking`, `obstruction`, `disorderly_parking` or `other`.
    pub kind: &'static str,
    pub road_id: Option<String>,
    pub position: Option<PositionView>,
    /// `open`, `notified`, `overdue`, `escalated` or `resolved`.
    pub status: &'static str,
    pub party_id: Option<String>,
    pub opened_at: DateTime<Utc>,
    /// When it escalates unless resolved.
    pub due_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// `report` (a warden's device), `warden` (this API) or `complaint`.
    pub source: &'static str,
    pub violation_id: Option<String>,
    pub complaint_id: Option<String>,
    pub note: Option<String>,
}

impl From<CaseRecord> for CaseView {
    fn from(c: CaseRecord) -> Self {
        CaseView {
            case_id: c.case_id,
            kind: c.kind.as_str(),
            road_id: c.road_id,
            position: c.position.map(|p| PositionView {
                lon: p.lon,
                lat: p.lat,
            }),
            status: c.status.as_str(),
            party_id: c.party_id,
            opened_at: c.opened_at,
            due_at: c.due_at,
            resolved_at: c.resolved_at,
            source: c.source.as_str(),
            violation_id: c.violation_id,
            complaint_id: c.complaint_id,
            note: c.note,
        }
    }
}

/// One step of a case.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseStepView {
    pub at: DateTime<Utc>,
    /// Who: a token's name, a device id, `public`; null for kerbside itself.
    pub actor: Option<String>,
    /// `opened`, `notified`, `unassigned`, `reported_again`, `overdue`,
    /// `escalated` or `resolved`.
    pub action: String,
    /// The case's status after it.
    pub status: &'static str,
    pub note: Option<String>,
}

/// A notification of the case to a party.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationView {
    pub party_id: String,
    /// Why it was sent: `opened`, `escalated` or `resolved`.
    pub event: String,
    /// Delivery attempts made so far.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// When the next attempt is due; null once delivered or given up.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Set when 24 hours of attempts all failed.
    pub gave_up_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed; null once delivered.
    pub last_error: Option<String>,
}

/// A case with its history and notifications.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseDetailView {
    #[serde(flatten)]
    pub case: CaseView,
    pub history: Vec<CaseStepView>,
    pub notifications: Vec<NotificationView>,
    /// The complaints behind the case, for the station's staff only (the
    /// public reads a complaint by its tracking code, without any of this).
    pub complaints: Vec<StaffComplaintView>,
}

/// A complaint behind a case, as staff see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StaffComplaintView {
    pub complaint_id: String,
    pub created_at: DateTime<Utc>,
    /// As the complainant wrote it (plain text: escape it wherever shown).
    pub text: String,
    /// To reach the complainant; null when none was given, and once
    /// `--keep-contacts-days` have passed since the complaint.
    pub contact: Option<String>,
}

impl From<CaseDetail> for CaseDetailView {
    fn from(d: CaseDetail) -> Self {
        CaseDetailView {
            case: d.case.into(),
            complaints: d
                .complaints
                .into_iter()
                .map(|c| StaffComplaintView {
                    complaint_id: c.complaint_id,
                    created_at: c.created_at,
                    text: c.text,
                    contact: c.contact,
                })
                .collect(),
            history: d
                .history
                .into_iter()
                .map(|s| CaseStepView {
                    at: s.at,
                    actor: s.actor,
                    action: s.action,
                    status: s.status.as_str(),
                    note: s.note,
                })
                .collect(),
            notifications: d
                .notifications
                .into_iter()
                .map(|n| NotificationView {
                    party_id: n.party_id,
                    event: n.event,
                    attempts: n.attempts,
                    created_at: n.created_at,
                    delivered_at: n.delivered_at,
                    next_attempt_at: n.next_attempt_at,
                    gave_up_at: n.gave_up_at,
                    last_error: n.last_error,
                })
                .collect(),
        }
    }
}

/// `POST /v1/cases`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCaseBody {
    /// `footway_parking`, `obstruction`, `disorderly_parking` or `other`.
    pub kind: String,
    pub position: PositionInput,
    /// `wgs84` (default) or `gcj02`.
    #[serde(default)]
    pub crs: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
    /// The party to tell, instead of the one whose area holds the position.
    #[serde(default)]
    pub party_id: Option<String>,
}

fn case_kind(s: &str, what: &str) -> Result<CaseKind, ApiError> {
    CaseKind::parse(s).ok_or_else(|| {
        ApiError::Unprocessable(format!("{what} {s:?} is not one of {}", CaseKind::names()))
    })
}

/// The road a position is on: the nearest within `metres`.
fn road_at(state: &AppState, p: Position, metres: f64) -> Option<String> {
    let map = state.street.map();
    if metres <= crate::street::ROAD_SNAP_M {
        return match map.place(p, EventType::Report) {
            Placement::Bay { road_id, .. } | Placement::Road { road_id } => {
                Some(road_id.to_string())
            }
            Placement::Nowhere => None,
        };
    }
    map.nearest_road(p, metres).map(|r| r.to_string())
}

/// Opens a case (or adds to the open one of the same party and kind
/// within 20 m); the party whose area holds it is told at once. Wardens.
#[utoipa::path(post, path = "/v1/cases", tag = "cases", request_body = NewCaseBody,
    security(("bearer" = [])),
    responses((status = 201, body = CaseView, description = "A new case"),
              (status = 200, body = CaseView, description = "The open case it already is; the report is added to its history"),
              (status = 400, body = super::problem::Problem), (status = 401, body = super::problem::Problem),
              (status = 403, body = super::problem::Problem), (status = 422, body = super::problem::Problem)))]
#[post("/cases")]
pub async fn open_case(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Warden])?;
    let body: NewCaseBody = json_body(&body)?;
    let kind = case_kind(&body.kind, "kind")?;
    let p = position(&body.position, body.crs.as_deref())?;
    check_optional_text("note", body.note.as_deref(), MAX_NOTE_CHARS)?;
    let new = NewCase {
        kind,
        position: Some(p),
        road_id: road_at(&state, p, crate::street::ROAD_SNAP_M),
        note: body.note,
        source: CaseSource::Warden,
        violation_id: None,
        complaint_id: None,
        party_id: body.party_id.clone(),
        actor: Some(caller.name.clone()),
    };
    let store = state.store.clone();
    let now = state.clock.now();
    let opened = match blocking(move || store.open_case(&new, now)).await {
        Err(ApiError::Store(StoreError::UnknownParty(id))) => {
            return Err(ApiError::Unprocessable(format!("there is no party {id:?}")));
        }
        other => other?,
    };
    let mut res = if opened.new {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(res.json(CaseView::from(opened.case)))
}

/// Which cases to list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct CasesQuery {
    /// `open` (default: every case not resolved), `overdue` (unresolved
    /// and past `due_at`), `escalated`, `resolved` or `all`.
    pub status: Option<String>,
    pub road_id: Option<String>,
}

/// `GET /v1/cases`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CasesResponse {
    pub cases: Vec<CaseView>,
}

/// Cases, newest first (at most 1000). Wardens and planners.
#[utoipa::path(get, path = "/v1/cases", tag = "cases", params(CasesQuery),
    security(("bearer" = [])),
    responses((status = 200, body = CasesResponse), (status = 400, body = super::problem::Problem),
              (status = 401, body = super::problem::Problem), (status = 403, body = super::problem::Problem)))]
#[get("/cases")]
pub async fn list_cases(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<CasesQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Warden, Role::Planner])?;
    let filter = match query.status.as_deref() {
        None | Some("open") => CaseFilter::Unresolved,
        Some("overdue") => CaseFilter::Overdue,
        Some("escalated") => CaseFilter::Escalated,
        Some("resolved") => CaseFilter::Resolved,
        Some("all") => CaseFilter::All,
        Some(s) => {
            return Err(ApiError::BadRequest(format!(
                "status {s:?} is not one of open, overdue, escalated, resolved, all"
            )));
        }
    };
    let road = query.road_id.clone();
    let store = state.store.clone();
    let now = state.clock.now();
    let cases = blocking(move || store.cases(filter, road.as_deref(), now)).await?;
    Ok(HttpResponse::Ok().json(CasesResponse {
        cases: cases.into_iter().map(CaseView::from).collect(),
    }))
}

/// A case with its full history and its notifications. Wardens and planners.
#[utoipa::path(get, path = "/v1/cases/{case_id}", tag = "cases",
    params(("case_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = CaseDetailView), (status = 401, body = super::problem::Problem),
              (status = 403, body = super::problem::Problem), (status = 404, body = super::problem::Problem)))]
#[get("/cases/{case_id}")]
pub async fn get_case(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Warden, Role::Planner])?;
    let id = path.into_inner();
    let store = state.store.clone();
    let cid = id.clone();
    match blocking(move || store.case(&cid)).await? {
        Some(d) => Ok(HttpResponse::Ok().json(CaseDetailView::from(d))),
        None => Err(ApiError::NotFound(format!("no case {id:?}"))),
    }
}

/// `POST /v1/cases/{case_id}/resolve`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// What was done (kept in the case's history).
    #[serde(default)]
    pub note: Option<String>,
    /// What the author of the complaint behind the case is told (public);
    /// "resolved / 已处理" when absent.
    #[serde(default)]
    pub response: Option<String>,
}

/// Resolves a case; its party (and enforcement, when it was escalated) is
/// told. 409 when it is resolved already. Wardens.
#[utoipa::path(post, path = "/v1/cases/{case_id}/resolve", tag = "cases",
    params(("case_id" = String, Path)), request_body(content = Option<ResolveBody>),
    security(("bearer" = [])),
    responses((status = 200, body = CaseView), (status = 401, body = super::problem::Problem),
              (status = 403, body = super::problem::Problem), (status = 404, body = super::problem::Problem),
              (status = 409, body = super::problem::Problem), (status = 422, body = super::problem::Problem)))]
#[post("/cases/{case_id}/resolve")]
pub async fn resolve_case(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Warden])?;
    let body: ResolveBody = if body.iter().all(u8::is_ascii_whitespace) {
        ResolveBody::default()
    } else {
        json_body(&body)?
    };
    check_optional_text("note", body.note.as_deref(), MAX_NOTE_CHARS)?;
    check_optional_text("response", body.response.as_deref(), MAX_NOTE_CHARS)?;
    let id = path.into_inner();
    let store = state.store.clone();
    let now = state.clock.now();
    let (cid, actor) = (id.clone(), caller.name.clone());
    let outcome = blocking(move || {
        store.resolve_case(
            &cid,
            &actor,
            body.note.as_deref(),
            body.response.as_deref(),
            now,
        )
    })
    .await?;
    match outcome {
        Resolved::Done(case) => {
            tracing::info!(case = %case.case_id, by = %caller.name, "case resolved");
            Ok(HttpResponse::Ok().json(CaseView::from(case)))
        }
        Resolved::Already(case) => Err(ApiError::Conflict(format!(
            "case {} is already resolved{}",
            case.case_id,
            case.resolved_at
                .map(|t| format!(" (at {})", crate::clock::rfc3339(t)))
                .unwrap_or_default()
        ))),
        Resolved::Unknown => Err(ApiError::NotFound(format!("no case {id:?}"))),
    }
}

/// `POST /v1/public/complaints`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComplaintBody {
    /// `footway_parking`, `obstruction`, `disorderly_parking` or `other`.
    pub category: String,
    pub position: PositionInput,
    /// `wgs84` (default) or `gcj02`.
    #[serde(default)]
    pub crs: Option<String>,
    /// Plain text, at most 1000 characters.
    pub text: String,
    /// Kept private; erased after `--keep-contacts-days`.
    #[serde(default)]
    pub contact: Option<String>,
}

/// A complaint as its author reads it back: never the contact.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComplaintView {
    /// The tracking code.
    pub complaint_id: String,
    pub category: &'static str,
    /// `received`, `in_progress` or `resolved`.
    pub status: &'static str,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// What the station answered, once resolved.
    pub response: Option<String>,
}

impl From<ComplaintRecord> for ComplaintView {
    fn from(c: ComplaintRecord) -> Self {
        ComplaintView {
            complaint_id: c.complaint_id,
            category: c.category.as_str(),
            status: c.status.as_str(),
            created_at: c.created_at,
            updated_at: c.updated_at,
            response: c.response,
        }
    }
}

/// The answer to a new complaint.
#[derive(Debug, Serialize, ToSchema)]
pub struct FiledComplaint {
    /// The tracking code (128 random bits): the only way to read it back.
    pub complaint_id: String,
    pub status: &'static str,
    pub created_at: DateTime<Utc>,
}

/// Files a complaint from the kiosk or a phone; it opens a case (on the
/// nearest road within 100 m, else on none). Public, rate-limited.
#[utoipa::path(post, path = "/v1/public/complaints", tag = "public", request_body = ComplaintBody,
    responses((status = 201, body = FiledComplaint), (status = 400, body = super::problem::Problem),
              (status = 422, body = super::problem::Problem), (status = 429, body = super::problem::Problem)))]
#[post("/complaints")]
pub async fn file_complaint(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    super::public::admit(&state, &req)?;
    let body: ComplaintBody = json_body(&body)?;
    let category = case_kind(&body.category, "category")?;
    let p = position(&body.position, body.crs.as_deref())?;
    if body.text.trim().is_empty() {
        return Err(ApiError::Unprocessable("text is empty".into()));
    }
    rules::check_text("text", &body.text, MAX_COMPLAINT_CHARS).map_err(ApiError::Unprocessable)?;
    check_optional_text("contact", body.contact.as_deref(), 200)?;
    let new = NewComplaint {
        complaint_id: rules::tracking_code(),
        category,
        position: p,
        road_id: road_at(&state, p, COMPLAINT_ROAD_WITHIN_M),
        text: body.text,
        contact: body.contact.filter(|c| !c.trim().is_empty()),
    };
    let store = state.store.clone();
    let now = state.clock.now();
    let filed = blocking(move || store.file_complaint(&new, now)).await?;
    Ok(super::public::cors(HttpResponse::Created().json(
        FiledComplaint {
            complaint_id: filed.complaint_id,
            status: filed.status.as_str(),
            created_at: filed.created_at,
        },
    )))
}

/// A complaint's status, by its tracking code. Public, rate-limited.
#[utoipa::path(get, path = "/v1/public/complaints/{complaint_id}", tag = "public",
    params(("complaint_id" = String, Path)),
    responses((status = 200, body = ComplaintView), (status = 404, body = super::problem::Problem),
              (status = 429, body = super::problem::Problem)))]
#[get("/complaints/{complaint_id}")]
pub async fn get_complaint(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    super::public::admit(&state, &req)?;
    let id = path.into_inner();
    if id.len() > 64 {
        return Err(ApiError::NotFound(
            "no complaint with that tracking code".into(),
        ));
    }
    let store = state.store.clone();
    match blocking(move || store.complaint(&id)).await? {
        Some(c) => Ok(super::public::cors(
            HttpResponse::Ok()
                .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
                .json(ComplaintView::from(c)),
        )),
        None => Err(ApiError::NotFound(
            "no complaint with that tracking code".into(),
        )),
    }
}
