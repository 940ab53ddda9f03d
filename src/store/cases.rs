//! Parties, cases, their history, the notification outbox and complaints
//! (contract 6.4).
//!
//! Every change of a case and the notifications it causes are written in
//! one transaction: a notification is in the outbox if and only if its
//! case changed, and the sender (`crate::notify`) works from the outbox
//! alone, so a crash or a restart loses none.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use geo::Polygon;

use super::coord::lock_cases;
use super::db::Db;
use super::schema::{
    case_history, cases, complaints, notification_attempts, notifications, parties,
};
use super::{Store, StoreError, from_ms, to_ms};
use crate::domain::cases::{
    self as rules, CaseKind, CaseSource, CaseStatus, ComplaintStatus, Notice, NoticeEvent,
    PartyArea, PartyKind, Step, WebhookFormat,
};
use crate::domain::events::Position;

/// The deadline of a case no party answers for, and a party's default.
pub const DEFAULT_DEADLINE_MINUTES: u32 = 120;
/// Most cases one list answers with.
pub const MAX_CASES_LISTED: i64 = 1000;

/// A party as stored (its secret apart).
#[derive(Debug, Clone)]
pub struct PartyRecord {
    pub party_id: String,
    pub name: String,
    pub kind: PartyKind,
    /// GeoJSON Polygon, WGS 84.
    pub area: Option<serde_json::Value>,
    pub webhook_url: String,
    pub webhook_format: WebhookFormat,
    pub deadline_minutes: u32,
    pub created_at: DateTime<Utc>,
}

/// A party to add: what was checked, and its webhook secret.
#[derive(Debug, Clone)]
pub struct NewParty {
    pub spec: rules::PartySpec,
    pub webhook_secret: String,
}

/// A case as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseRecord {
    pub case_id: String,
    pub kind: CaseKind,
    pub road_id: Option<String>,
    pub position: Option<Position>,
    pub status: CaseStatus,
    pub party_id: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub due_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub source: CaseSource,
    pub violation_id: Option<String>,
    pub complaint_id: Option<String>,
    pub note: Option<String>,
}

/// One step in a case's history: who did what, when.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseStep {
    pub at: DateTime<Utc>,
    /// A token's name, a device, or `None` for kerbside itself.
    pub actor: Option<String>,
    /// `opened`, `reported_again`, `notified`, `overdue`, `escalated`,
    /// `resolved`.
    pub action: String,
    pub status: CaseStatus,
    pub note: Option<String>,
}

/// A notification of a case, as its case shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationRecord {
    pub notification_id: i64,
    pub party_id: String,
    pub event: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub gave_up_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// A case with everything that happened to it.
#[derive(Debug, Clone)]
pub struct CaseDetail {
    pub case: CaseRecord,
    pub history: Vec<CaseStep>,
    pub notifications: Vec<NotificationRecord>,
    /// The complaints that opened or joined the case, oldest first.
    pub complaints: Vec<ComplaintForStaff>,
}

/// A complaint as the station's staff see it: with its text and, until
/// `--keep-contacts-days` have passed, its contact.
#[derive(Debug, Clone, PartialEq)]
pub struct ComplaintForStaff {
    pub complaint_id: String,
    pub created_at: DateTime<Utc>,
    pub text: String,
    /// None when none was given, or once erased.
    pub contact: Option<String>,
}

/// A problem to open a case for (or to add to the open case it already is).
#[derive(Debug, Clone)]
pub struct NewCase {
    pub kind: CaseKind,
    pub position: Option<Position>,
    pub road_id: Option<String>,
    pub note: Option<String>,
    pub source: CaseSource,
    pub violation_id: Option<String>,
    pub complaint_id: Option<String>,
    /// A party named by the warden, overriding the assignment by position.
    pub party_id: Option<String>,
    /// Who reported it (a token's name, a device).
    pub actor: Option<String>,
}

/// What opening a case did.
#[derive(Debug, Clone)]
pub struct Opened {
    pub case: CaseRecord,
    /// False when the problem was an open case already (a second report).
    pub new: bool,
}

/// Which cases to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseFilter {
    /// Every case not resolved.
    Unresolved,
    /// Unresolved and past `due_at` (overdue or escalated).
    Overdue,
    Escalated,
    Resolved,
    All,
}

/// A notification due for an attempt, with what sending it needs.
#[derive(Debug, Clone)]
pub struct Pending {
    pub notification_id: i64,
    pub party_id: String,
    pub url: String,
    pub secret: String,
    /// What the receiver is: kerbside's JSON, or a chat group robot.
    pub format: WebhookFormat,
    /// A DingTalk robot's signing secret, to sign the URL with at send time.
    pub robot_secret: Option<String>,
    pub body: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

/// How one delivery attempt went.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    /// The HTTP status, when the receiver answered.
    pub http_status: Option<u16>,
    /// Why it failed; `None` when delivered (a 2xx).
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// A complaint, as its author may read it back.
#[derive(Debug, Clone, PartialEq)]
pub struct ComplaintRecord {
    pub complaint_id: String,
    pub category: CaseKind,
    pub status: ComplaintStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub response: Option<String>,
    pub case_id: Option<String>,
}

/// A complaint to file.
#[derive(Debug, Clone)]
pub struct NewComplaint {
    pub complaint_id: String,
    pub category: CaseKind,
    pub position: Position,
    pub road_id: Option<String>,
    pub text: String,
    pub contact: Option<String>,
}

/// What resolving a case did.
#[derive(Debug, Clone)]
pub enum Resolved {
    Done(CaseRecord),
    /// It was resolved already.
    Already(CaseRecord),
    Unknown,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = parties)]
struct PartyRow {
    party_id: String,
    name: String,
    kind: String,
    area: Option<String>,
    webhook_url: String,
    webhook_format: String,
    deadline_minutes: i32,
    created_at_ms: i64,
}

impl PartyRow {
    fn record(self) -> Result<PartyRecord, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("party {}: {what}", self.party_id));
        Ok(PartyRecord {
            kind: PartyKind::parse(&self.kind).ok_or_else(|| corrupt("kind"))?,
            area: match &self.area {
                Some(a) => Some(serde_json::from_str(a).map_err(|_| corrupt("area"))?),
                None => None,
            },
            webhook_format: WebhookFormat::parse(&self.webhook_format)
                .ok_or_else(|| corrupt("webhook_format"))?,
            deadline_minutes: u32::try_from(self.deadline_minutes)
                .map_err(|_| corrupt("deadline"))?,
            created_at: from_ms(self.created_at_ms)?,
            party_id: self.party_id,
            name: self.name,
            webhook_url: self.webhook_url,
        })
    }
}

/// A party's area as the assignment rule reads it.
fn polygon_of(area: &str) -> Option<Polygon<f64>> {
    let g: geojson::Geometry = serde_json::from_str(area).ok()?;
    Polygon::try_from(g).ok()
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = cases)]
struct CaseRow {
    case_id: String,
    kind: String,
    road_id: Option<String>,
    lon: Option<f64>,
    lat: Option<f64>,
    status: String,
    party_id: Option<String>,
    opened_at_ms: i64,
    due_at_ms: Option<i64>,
    resolved_at_ms: Option<i64>,
    source: String,
    violation_id: Option<String>,
    complaint_id: Option<String>,
    note: Option<String>,
    updated_at_ms: i64,
}

impl CaseRow {
    fn record(self) -> Result<CaseRecord, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("case {}: {what}", self.case_id));
        Ok(CaseRecord {
            kind: CaseKind::parse(&self.kind).ok_or_else(|| corrupt("kind"))?,
            position: match (self.lon, self.lat) {
                (Some(lon), Some(lat)) => Some(Position { lon, lat }),
                _ => None,
            },
            status: CaseStatus::parse(&self.status).ok_or_else(|| corrupt("status"))?,
            opened_at: from_ms(self.opened_at_ms)?,
            due_at: self.due_at_ms.map(from_ms).transpose()?,
            resolved_at: self.resolved_at_ms.map(from_ms).transpose()?,
            source: CaseSource::parse(&self.source).ok_or_else(|| corrupt("source"))?,
            case_id: self.case_id,
            road_id: self.road_id,
            party_id: self.party_id,
            violation_id: self.violation_id,
            complaint_id: self.complaint_id,
            note: self.note,
        })
    }
}

fn history(
    conn: &mut Db,
    case_id: &str,
    now: DateTime<Utc>,
    actor: Option<&str>,
    action: &str,
    status: CaseStatus,
    note: Option<&str>,
) -> Result<(), StoreError> {
    diesel::insert_into(case_history::table)
        .values((
            case_history::case_id.eq(case_id),
            case_history::at_ms.eq(to_ms(now)),
            case_history::actor.eq(actor),
            case_history::action.eq(action),
            case_history::status.eq(status.as_str()),
            case_history::note.eq(note),
        ))
        .execute(conn)?;
    Ok(())
}

/// A case's history, oldest first.
fn load_history(conn: &mut Db, case_id: &str) -> Result<Vec<CaseStep>, StoreError> {
    type StepRow = (i64, Option<String>, String, String, Option<String>);
    let steps: Vec<StepRow> = case_history::table
        .filter(case_history::case_id.eq(case_id))
        .order(case_history::seq)
        .select((
            case_history::at_ms,
            case_history::actor,
            case_history::action,
            case_history::status,
            case_history::note,
        ))
        .load(conn)?;
    steps
        .into_iter()
        .map(|(at, actor, action, status, note)| {
            Ok(CaseStep {
                at: from_ms(at)?,
                actor,
                action,
                status: CaseStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("case {case_id}: status")))?,
                note,
            })
        })
        .collect()
}

/// Writes a notification of `case` to `party_id` into the outbox, due at
/// once; its body is fixed now, in the party's format.
fn enqueue(
    conn: &mut Db,
    case: &CaseRecord,
    party_id: &str,
    format: WebhookFormat,
    event: NoticeEvent,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let history = load_history(conn, &case.case_id)?
        .into_iter()
        .map(|h| rules::NoticeStep {
            at: crate::clock::rfc3339(h.at),
            action: h.action,
            status: h.status.as_str().to_owned(),
            actor: h.actor,
            note: h.note,
        })
        .collect();
    let notice = Notice {
        history,
        case_id: &case.case_id,
        kind: case.kind.as_str(),
        road_id: case.road_id.as_deref(),
        position: case.position,
        status: case.status.as_str(),
        due_at: case.due_at.map(crate::clock::rfc3339),
        note: case.note.as_deref(),
        event: event.as_str(),
    };
    diesel::insert_into(notifications::table)
        .values((
            notifications::case_id.eq(&case.case_id),
            notifications::party_id.eq(party_id),
            notifications::event.eq(event.as_str()),
            notifications::body.eq(rules::webhook_body(format, &notice)),
            notifications::created_at_ms.eq(to_ms(now)),
            notifications::next_attempt_at_ms.eq(Some(to_ms(now))),
            notifications::attempts.eq(0),
        ))
        .execute(conn)?;
    Ok(())
}

/// The parties of `kind`, with their formats.
fn parties_of_kind(
    conn: &mut Db,
    kind: PartyKind,
) -> Result<Vec<(String, WebhookFormat)>, StoreError> {
    let rows: Vec<(String, String)> = parties::table
        .filter(parties::kind.eq(kind.as_str()))
        .order(parties::party_id)
        .select((parties::party_id, parties::webhook_format))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, f)| WebhookFormat::parse(&f).map(|f| (id, f)))
        .collect())
}

fn load_case(conn: &mut Db, case_id: &str) -> Result<Option<CaseRecord>, StoreError> {
    cases::table
        .find(case_id)
        .select(CaseRow::as_select())
        .first(conn)
        .optional()?
        .map(CaseRow::record)
        .transpose()
}

fn set_status(
    conn: &mut Db,
    case_id: &str,
    status: CaseStatus,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    diesel::update(cases::table.find(case_id))
        .set((
            cases::status.eq(status.as_str()),
            cases::updated_at_ms.eq(to_ms(now)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Opens a case for `new`, or adds it to the open case of the same party
/// and kind within 20 m, inside the caller's write transaction. The party
/// is told at once (through the outbox).
pub(super) fn open_case_in(
    conn: &mut Db,
    new: &NewCase,
    now: DateTime<Utc>,
) -> Result<Opened, StoreError> {
    lock_cases(conn)?;
    let rows: Vec<PartyRow> = parties::table
        .order(parties::party_id)
        .select(PartyRow::as_select())
        .load(conn)?;
    let areas: Vec<(usize, Option<Polygon<f64>>)> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (i, r.area.as_deref().and_then(polygon_of)))
        .collect();
    let party = match (&new.party_id, new.position) {
        (Some(id), _) => Some(
            rows.iter()
                .find(|r| &r.party_id == id)
                .ok_or_else(|| StoreError::UnknownParty(id.clone()))?,
        ),
        (None, Some(p)) => {
            let candidates: Vec<PartyArea<'_>> = areas
                .iter()
                .map(|(i, a)| PartyArea {
                    party_id: &rows[*i].party_id,
                    kind: PartyKind::parse(&rows[*i].kind).unwrap_or(PartyKind::Other),
                    area: a.as_ref(),
                })
                .collect();
            rules::assign(&candidates, p).and_then(|id| rows.iter().find(|r| r.party_id == id))
        }
        (None, None) => None,
    };
    let party_id = party.map(|p| p.party_id.clone());

    // The same problem, reported again?
    if let Some(p) = new.position {
        let mut open = cases::table
            .filter(cases::kind.eq(new.kind.as_str()))
            .filter(cases::status.ne(CaseStatus::Resolved.as_str()))
            .into_boxed();
        open = match &party_id {
            Some(id) => open.filter(cases::party_id.eq(id.clone())),
            None => open.filter(cases::party_id.is_null()),
        };
        let candidates: Vec<CaseRow> = open
            .order(cases::opened_at_ms)
            .select(CaseRow::as_select())
            .load(conn)?;
        for row in candidates {
            let q = match (row.lon, row.lat) {
                (Some(lon), Some(lat)) => Position { lon, lat },
                _ => continue,
            };
            if rules::same_case(p, q) {
                let case = row.record()?;
                let mut note = format!("reported again ({})", new.source.as_str());
                if let Some(v) = &new.violation_id {
                    note.push_str(&format!(", violation {v}"));
                }
                if let Some(c) = &new.complaint_id {
                    note.push_str(&format!(", complaint {c}"));
                }
                if let Some(n) = &new.note {
                    note.push_str(&format!(": {n}"));
                }
                history(
                    conn,
                    &case.case_id,
                    now,
                    new.actor.as_deref(),
                    "reported_again",
                    case.status,
                    Some(&note),
                )?;
                diesel::update(cases::table.find(&case.case_id))
                    .set(cases::updated_at_ms.eq(to_ms(now)))
                    .execute(conn)?;
                return Ok(Opened { case, new: false });
            }
        }
    }

    let deadline = party.map_or(DEFAULT_DEADLINE_MINUTES, |p| {
        u32::try_from(p.deadline_minutes).unwrap_or(DEFAULT_DEADLINE_MINUTES)
    });
    let status = if party.is_some() {
        CaseStatus::Notified
    } else {
        CaseStatus::Open
    };
    let row = CaseRow {
        case_id: rules::case_id(),
        kind: new.kind.as_str().into(),
        road_id: new.road_id.clone(),
        lon: new.position.map(|p| p.lon),
        lat: new.position.map(|p| p.lat),
        status: status.as_str().into(),
        party_id: party_id.clone(),
        opened_at_ms: to_ms(now),
        due_at_ms: Some(to_ms(rules::due_at(now, deadline))),
        resolved_at_ms: None,
        source: new.source.as_str().into(),
        violation_id: new.violation_id.clone(),
        complaint_id: new.complaint_id.clone(),
        note: new.note.clone(),
        updated_at_ms: to_ms(now),
    };
    diesel::insert_into(cases::table)
        .values(&row)
        .execute(conn)?;
    let case = row.record()?;
    history(
        conn,
        &case.case_id,
        now,
        new.actor.as_deref(),
        "opened",
        CaseStatus::Open,
        new.note.as_deref(),
    )?;
    match party {
        Some(p) => {
            let format = WebhookFormat::parse(&p.webhook_format).unwrap_or(WebhookFormat::Json);
            enqueue(conn, &case, &p.party_id, format, NoticeEvent::Opened, now)?;
            history(
                conn,
                &case.case_id,
                now,
                None,
                "notified",
                CaseStatus::Notified,
                Some(&format!(
                    "{} ({}) told; due in {deadline} min",
                    p.name, p.party_id
                )),
            )?;
        }
        None => history(
            conn,
            &case.case_id,
            now,
            None,
            "unassigned",
            CaseStatus::Open,
            Some(&format!(
                "no party answers for this place; escalated after {deadline} min unless resolved"
            )),
        )?,
    }
    Ok(Opened { case, new: true })
}

impl Store {
    /// Adds a party; `PartyExists` when its id is taken.
    pub fn add_party(&self, p: &NewParty, now: DateTime<Utc>) -> Result<PartyRecord, StoreError> {
        let secret = &p.webhook_secret;
        let p = &p.spec;
        self.write(|conn| {
            let taken: i64 = parties::table
                .filter(parties::party_id.eq(&p.party_id))
                .count()
                .get_result(conn)?;
            if taken > 0 {
                return Err(StoreError::PartyExists(p.party_id.clone()));
            }
            diesel::insert_into(parties::table)
                .values((
                    parties::party_id.eq(&p.party_id),
                    parties::name.eq(&p.name),
                    parties::kind.eq(p.kind.as_str()),
                    parties::area.eq(p.area.as_ref().map(|(_, text)| text.as_str())),
                    parties::webhook_url.eq(&p.webhook_url),
                    parties::webhook_format.eq(p.webhook_format.as_str()),
                    parties::webhook_secret.eq(secret),
                    parties::robot_secret.eq(p.robot_secret.as_deref()),
                    parties::deadline_minutes
                        .eq(i32::try_from(p.deadline_minutes).unwrap_or(i32::MAX)),
                    parties::created_at_ms.eq(to_ms(now)),
                ))
                .execute(conn)?;
            parties::table
                .find(&p.party_id)
                .select(PartyRow::as_select())
                .first(conn)?
                .record()
        })
    }

    /// Every party, by id, without secrets.
    pub fn parties(&self) -> Result<Vec<PartyRecord>, StoreError> {
        let rows: Vec<PartyRow> = parties::table
            .order(parties::party_id)
            .select(PartyRow::as_select())
            .load(&mut *self.conn()?)?;
        rows.into_iter().map(PartyRow::record).collect()
    }

    /// Opens a case (or adds to the open one it already is).
    pub fn open_case(&self, new: &NewCase, now: DateTime<Utc>) -> Result<Opened, StoreError> {
        self.write(|conn| open_case_in(conn, new, now))
    }

    /// Cases by `filter` (and road), newest first, at most
    /// [`MAX_CASES_LISTED`].
    pub fn cases(
        &self,
        filter: CaseFilter,
        road_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<CaseRecord>, StoreError> {
        let mut q = cases::table.into_boxed();
        let resolved = CaseStatus::Resolved.as_str();
        q = match filter {
            CaseFilter::Unresolved => q.filter(cases::status.ne(resolved)),
            CaseFilter::Overdue => q
                .filter(cases::status.ne(resolved))
                .filter(cases::due_at_ms.le(to_ms(now))),
            CaseFilter::Escalated => q.filter(cases::status.eq(CaseStatus::Escalated.as_str())),
            CaseFilter::Resolved => q.filter(cases::status.eq(resolved)),
            CaseFilter::All => q,
        };
        if let Some(r) = road_id {
            q = q.filter(cases::road_id.eq(r.to_owned()));
        }
        let rows: Vec<CaseRow> = q
            .order((cases::opened_at_ms.desc(), cases::case_id))
            .limit(MAX_CASES_LISTED)
            .select(CaseRow::as_select())
            .load(&mut *self.conn()?)?;
        rows.into_iter().map(CaseRow::record).collect()
    }

    /// Cases changed (opened, notified, escalated, resolved, reported
    /// again) at or after `since_ms`, by any instance, oldest change first,
    /// at most `limit`, each with its change time in ms: what the live
    /// stream tells staff. Read by the `cases_changed` index.
    pub fn cases_changed_since(
        &self,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<(i64, CaseRecord)>, StoreError> {
        let rows: Vec<CaseRow> = cases::table
            .filter(cases::updated_at_ms.ge(since_ms))
            .order((cases::updated_at_ms, cases::case_id))
            .limit(limit)
            .select(CaseRow::as_select())
            .load(&mut *self.conn()?)?;
        rows.into_iter()
            .map(|r| {
                let at = r.updated_at_ms;
                Ok((at, r.record()?))
            })
            .collect()
    }

    /// A case with its history and notifications.
    pub fn case(&self, case_id: &str) -> Result<Option<CaseDetail>, StoreError> {
        let conn = &mut *self.conn()?;
        let Some(case) = load_case(conn, case_id)? else {
            return Ok(None);
        };
        let history = load_history(conn, case_id)?;
        type Row = (
            i64,
            String,
            String,
            i32,
            i64,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<String>,
        );
        let rows: Vec<Row> = notifications::table
            .filter(notifications::case_id.eq(case_id))
            .order(notifications::notification_id)
            .select((
                notifications::notification_id,
                notifications::party_id,
                notifications::event,
                notifications::attempts,
                notifications::created_at_ms,
                notifications::delivered_at_ms,
                notifications::gave_up_at_ms,
                notifications::next_attempt_at_ms,
                notifications::last_error,
            ))
            .load(conn)?;
        let notifications = rows
            .into_iter()
            .map(
                |(id, party, event, attempts, created, delivered, gave_up, next, err)| {
                    Ok(NotificationRecord {
                        notification_id: id,
                        party_id: party,
                        event,
                        attempts,
                        created_at: from_ms(created)?,
                        delivered_at: delivered.map(from_ms).transpose()?,
                        gave_up_at: gave_up.map(from_ms).transpose()?,
                        next_attempt_at: next.map(from_ms).transpose()?,
                        last_error: err,
                    })
                },
            )
            .collect::<Result<_, StoreError>>()?;
        let complaints = complaints::table
            .filter(complaints::case_id.eq(case_id))
            .order((complaints::created_at_ms, complaints::complaint_id))
            .select((
                complaints::complaint_id,
                complaints::created_at_ms,
                complaints::text,
                complaints::contact,
            ))
            .load::<(String, i64, String, Option<String>)>(conn)?
            .into_iter()
            .map(|(complaint_id, created, text, contact)| {
                Ok(ComplaintForStaff {
                    complaint_id,
                    created_at: from_ms(created)?,
                    text,
                    contact,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Some(CaseDetail {
            case,
            history,
            notifications,
            complaints,
        }))
    }

    /// Resolves a case: its party (and enforcement, if it was escalated)
    /// is told; a complaint behind it gets `response`.
    pub fn resolve_case(
        &self,
        case_id: &str,
        actor: &str,
        note: Option<&str>,
        response: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Resolved, StoreError> {
        self.write(|conn| {
            lock_cases(conn)?;
            let Some(mut case) = load_case(conn, case_id)? else {
                return Ok(Resolved::Unknown);
            };
            let was = case.status;
            let Ok(status) = rules::step(was, Step::Resolve) else {
                return Ok(Resolved::Already(case));
            };
            diesel::update(cases::table.find(case_id))
                .set((
                    cases::status.eq(status.as_str()),
                    cases::resolved_at_ms.eq(Some(to_ms(now))),
                    cases::updated_at_ms.eq(to_ms(now)),
                ))
                .execute(conn)?;
            case.status = status;
            case.resolved_at = Some(now);
            history(conn, case_id, now, Some(actor), "resolved", status, note)?;
            let mut told: Vec<(String, WebhookFormat)> = Vec::new();
            if let Some(p) = &case.party_id {
                let f: String = parties::table
                    .find(p)
                    .select(parties::webhook_format)
                    .first(conn)?;
                told.push((
                    p.clone(),
                    WebhookFormat::parse(&f).unwrap_or(WebhookFormat::Json),
                ));
            }
            if was == CaseStatus::Escalated {
                told.extend(parties_of_kind(conn, PartyKind::Enforcement)?);
            }
            for (party, format) in told {
                enqueue(conn, &case, &party, format, NoticeEvent::Resolved, now)?;
            }
            if let Some(c) = &case.complaint_id {
                diesel::update(complaints::table.find(c))
                    .set((
                        complaints::status.eq(ComplaintStatus::Resolved.as_str()),
                        complaints::response.eq(response.or(Some("resolved / 已处理"))),
                        complaints::updated_at_ms.eq(to_ms(now)),
                    ))
                    .execute(conn)?;
            }
            Ok(Resolved::Done(case))
        })
    }

    /// Cases whose deadline has passed by `now`: each becomes `overdue`
    /// and at once `escalated`, and every enforcement party is told.
    /// Safe to repeat and to run on several instances. Returns how many.
    pub fn escalate_due_cases(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.write(|conn| {
            lock_cases(conn)?;
            let due: Vec<CaseRow> = cases::table
                .filter(
                    cases::status
                        .eq_any([CaseStatus::Open.as_str(), CaseStatus::Notified.as_str()]),
                )
                .filter(cases::due_at_ms.le(to_ms(now)))
                .order(cases::due_at_ms)
                .limit(500)
                .select(CaseRow::as_select())
                .load(conn)?;
            if due.is_empty() {
                return Ok(0);
            }
            let squads = parties_of_kind(conn, PartyKind::Enforcement)?;
            let n = due.len();
            for row in due {
                let mut case = row.record()?;
                let id = case.case_id.clone();
                history(
                    conn,
                    &id,
                    now,
                    None,
                    "overdue",
                    CaseStatus::Overdue,
                    case.due_at
                        .map(|d| format!("due at {}", crate::clock::rfc3339(d)))
                        .as_deref(),
                )?;
                case.status = CaseStatus::Escalated;
                set_status(conn, &id, case.status, now)?;
                let note = if squads.is_empty() {
                    "no enforcement party is registered to tell".to_owned()
                } else {
                    let ids: Vec<&str> = squads.iter().map(|(p, _)| p.as_str()).collect();
                    format!("told {}", ids.join(", "))
                };
                history(conn, &id, now, None, "escalated", case.status, Some(&note))?;
                for (party, format) in &squads {
                    enqueue(conn, &case, party, *format, NoticeEvent::Escalated, now)?;
                }
            }
            Ok(n)
        })
    }

    /// Notifications due for an attempt by `now`, oldest first.
    pub fn due_notifications(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Pending>, StoreError> {
        type Row = (
            i64,
            String,
            String,
            String,
            String,
            Option<String>,
            String,
            i32,
            i64,
        );
        let rows: Vec<Row> = notifications::table
            .inner_join(parties::table)
            .filter(notifications::next_attempt_at_ms.le(to_ms(now)))
            .order(notifications::next_attempt_at_ms)
            .limit(limit)
            .select((
                notifications::notification_id,
                notifications::party_id,
                parties::webhook_url,
                parties::webhook_secret,
                parties::webhook_format,
                parties::robot_secret,
                notifications::body,
                notifications::attempts,
                notifications::created_at_ms,
            ))
            .load(&mut *self.conn()?)?;
        rows.into_iter()
            .map(
                |(id, party, url, secret, format, robot_secret, body, attempts, created)| {
                    Ok(Pending {
                        notification_id: id,
                        url,
                        secret,
                        format: WebhookFormat::parse(&format).ok_or_else(|| {
                            StoreError::Corrupt(format!("party {party}: webhook_format"))
                        })?,
                        robot_secret,
                        body,
                        attempts,
                        created_at: from_ms(created)?,
                        party_id: party,
                    })
                },
            )
            .collect()
    }

    /// Records an attempt at a notification: delivered (a 2xx), or due
    /// again after the backoff, or given up 24 h after it was written.
    /// An attempt at one already delivered (by another instance) changes
    /// nothing but the attempts' record.
    pub fn record_attempt(&self, notification_id: i64, a: &Attempt) -> Result<(), StoreError> {
        self.write(|conn| {
            diesel::insert_into(notification_attempts::table)
                .values((
                    notification_attempts::notification_id.eq(notification_id),
                    notification_attempts::at_ms.eq(to_ms(a.at)),
                    notification_attempts::http_status.eq(a.http_status.map(i32::from)),
                    notification_attempts::error.eq(a.error.as_deref()),
                    notification_attempts::duration_ms.eq(a.duration_ms),
                ))
                .execute(conn)?;
            let row: Option<(i32, i64, Option<i64>)> = notifications::table
                .find(notification_id)
                .select((
                    notifications::attempts,
                    notifications::created_at_ms,
                    notifications::delivered_at_ms,
                ))
                .first(conn)
                .optional()?;
            let Some((attempts, created, delivered)) = row else {
                return Ok(());
            };
            if delivered.is_some() {
                return Ok(());
            }
            let attempts = attempts + 1;
            let target = notifications::table.find(notification_id);
            match &a.error {
                None => {
                    diesel::update(target)
                        .set((
                            notifications::attempts.eq(attempts),
                            notifications::delivered_at_ms.eq(Some(to_ms(a.at))),
                            notifications::next_attempt_at_ms.eq(None::<i64>),
                            notifications::last_error.eq(None::<String>),
                        ))
                        .execute(conn)?;
                }
                Some(err) => {
                    let created = from_ms(created)?;
                    let give_up = a.at - created >= rules::give_up_after();
                    let next = (!give_up).then(|| {
                        to_ms(a.at + rules::backoff(u32::try_from(attempts).unwrap_or(u32::MAX)))
                    });
                    diesel::update(target)
                        .set((
                            notifications::attempts.eq(attempts),
                            notifications::next_attempt_at_ms.eq(next),
                            notifications::gave_up_at_ms.eq(give_up.then(|| to_ms(a.at))),
                            notifications::last_error.eq(Some(err.as_str())),
                        ))
                        .execute(conn)?;
                }
            }
            Ok(())
        })
    }

    /// Files a complaint and opens (or adds to) its case, in one
    /// transaction.
    pub fn file_complaint(
        &self,
        c: &NewComplaint,
        now: DateTime<Utc>,
    ) -> Result<ComplaintRecord, StoreError> {
        self.write(|conn| {
            diesel::insert_into(complaints::table)
                .values((
                    complaints::complaint_id.eq(&c.complaint_id),
                    complaints::category.eq(c.category.as_str()),
                    complaints::lon.eq(c.position.lon),
                    complaints::lat.eq(c.position.lat),
                    complaints::text.eq(&c.text),
                    complaints::contact.eq(c.contact.as_deref()),
                    complaints::status.eq(ComplaintStatus::Received.as_str()),
                    complaints::created_at_ms.eq(to_ms(now)),
                    complaints::updated_at_ms.eq(to_ms(now)),
                ))
                .execute(conn)?;
            let opened = open_case_in(
                conn,
                &NewCase {
                    kind: c.category,
                    position: Some(c.position),
                    road_id: c.road_id.clone(),
                    note: Some(c.text.clone()),
                    source: CaseSource::Complaint,
                    violation_id: None,
                    complaint_id: Some(c.complaint_id.clone()),
                    party_id: None,
                    actor: Some("public".into()),
                },
                now,
            )?;
            let status = if opened.case.status == CaseStatus::Open {
                ComplaintStatus::Received
            } else {
                ComplaintStatus::InProgress
            };
            diesel::update(complaints::table.find(&c.complaint_id))
                .set((
                    complaints::status.eq(status.as_str()),
                    complaints::case_id.eq(Some(&opened.case.case_id)),
                ))
                .execute(conn)?;
            Ok(ComplaintRecord {
                complaint_id: c.complaint_id.clone(),
                category: c.category,
                status,
                created_at: now,
                updated_at: now,
                response: None,
                case_id: Some(opened.case.case_id),
            })
        })
    }

    /// A complaint as its author may see it: never the contact or the text.
    pub fn complaint(&self, complaint_id: &str) -> Result<Option<ComplaintRecord>, StoreError> {
        type Row = (
            String,
            String,
            String,
            i64,
            i64,
            Option<String>,
            Option<String>,
        );
        let row: Option<Row> = complaints::table
            .find(complaint_id)
            .select((
                complaints::complaint_id,
                complaints::category,
                complaints::status,
                complaints::created_at_ms,
                complaints::updated_at_ms,
                complaints::response,
                complaints::case_id,
            ))
            .first(&mut *self.conn()?)
            .optional()?;
        row.map(
            |(id, category, status, created, updated, response, case_id)| {
                let corrupt = |what: &str| StoreError::Corrupt(format!("complaint {id}: {what}"));
                Ok(ComplaintRecord {
                    category: CaseKind::parse(&category).ok_or_else(|| corrupt("category"))?,
                    status: ComplaintStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
                    created_at: from_ms(created)?,
                    updated_at: from_ms(updated)?,
                    complaint_id: id,
                    response,
                    case_id,
                })
            },
        )
        .transpose()
    }

    /// Erases the contact of every complaint filed before `cutoff`.
    /// Returns how many.
    pub fn erase_contacts(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError> {
        self.write(|conn| {
            Ok(diesel::update(
                complaints::table
                    .filter(complaints::contact.is_not_null())
                    .filter(complaints::created_at_ms.lt(to_ms(cutoff))),
            )
            .set(complaints::contact.eq(None::<String>))
            .execute(conn)?)
        })
    }

    /// How many cases are in each status.
    pub fn case_counts(&self) -> Result<Vec<(CaseStatus, i64)>, StoreError> {
        let rows: Vec<(String, i64)> = cases::table
            .group_by(cases::status)
            .select((cases::status, diesel::dsl::count_star()))
            .load(&mut *self.conn()?)?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, n)| CaseStatus::parse(&s).map(|s| (s, n)))
            .collect())
    }

    /// How long resolved cases took, opened to resolved: for each bound
    /// (seconds) how many took at most that long, then the count and the
    /// sum of seconds. Reads one number per resolved case.
    pub fn resolve_times(&self, bounds_s: &[i64]) -> Result<(Vec<i64>, i64, i64), StoreError> {
        let took: Vec<i64> = cases::table
            .filter(cases::resolved_at_ms.is_not_null())
            .select(cases::resolved_at_ms.assume_not_null() - cases::opened_at_ms)
            .load(&mut *self.conn()?)?;
        let within = bounds_s
            .iter()
            .map(|b| took.iter().filter(|t| **t <= b * 1000).count() as i64)
            .collect();
        let sum_s = took.iter().sum::<i64>() / 1000;
        Ok((within, took.len() as i64, sum_s))
    }
}
