//! Roads, layout revisions and their features.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use geo::BoundingRect;
use geojson::{Feature, FeatureCollection};

use super::db::on_backend;
use super::schema::{bays, layout_features, layout_revisions, parking_sessions, roads};
use super::{Store, StoreError, from_ms, to_ms};
use crate::domain::ids::{BayId, RoadId};
use crate::domain::layout::{Layout, parse_layouts};

/// What is recorded of one published revision.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionInfo {
    pub road_id: RoadId,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    /// Name of the token (or the import) that published it.
    pub created_by: String,
    /// The revision it was drawn from, when the publisher said so.
    pub based_on: Option<i64>,
    pub bays: i64,
    pub barriers: i64,
}

/// A revision and its layout.
#[derive(Debug, Clone)]
pub struct StoredLayout {
    pub info: RevisionInfo,
    pub layout: Layout,
}

#[derive(Queryable)]
struct RevisionRow {
    road_id: String,
    revision: i64,
    created_at_ms: i64,
    created_by: String,
    based_on: Option<i64>,
    bays: i64,
    barriers: i64,
}

impl TryFrom<RevisionRow> for RevisionInfo {
    type Error = StoreError;
    fn try_from(r: RevisionRow) -> Result<Self, StoreError> {
        Ok(RevisionInfo {
            road_id: RoadId::parse(&r.road_id)
                .map_err(|e| StoreError::Corrupt(format!("road id {:?} {e}", r.road_id)))?,
            revision: r.revision,
            created_at: from_ms(r.created_at_ms)?,
            created_by: r.created_by,
            based_on: r.based_on,
            bays: r.bays,
            barriers: r.barriers,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = layout_features)]
struct NewFeature<'a> {
    road_id: &'a str,
    revision: i64,
    ordinal: i64,
    feature_id: &'a str,
    feature_type: &'a str,
    kind: Option<&'a str>,
    max_stay_minutes: Option<i64>,
    enforced_hours: Option<String>,
    feature: String,
    min_lon: f64,
    min_lat: f64,
    max_lon: f64,
    max_lat: f64,
}

fn feature_json(f: &Feature) -> Result<String, StoreError> {
    serde_json::to_string(f).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Store {
    /// Whether any road has been stored yet.
    pub fn has_roads(&self) -> Result<bool, StoreError> {
        let n: i64 = roads::table.count().get_result(&mut self.conn()?)?;
        Ok(n > 0)
    }

    /// Publishes `layout` as the road's next revision, in one transaction.
    ///
    /// With `expected` set, fails with [`StoreError::RevisionConflict`] unless
    /// the road's current revision is exactly that (0 for a road that does not
    /// exist yet). Bays keep their identity across revisions; bays of the road
    /// missing from `layout` are retired at this revision (their open
    /// sessions end at `now`).
    pub fn publish_layout(
        &self,
        layout: &Layout,
        created_by: &str,
        based_on: Option<i64>,
        expected: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<RevisionInfo, StoreError> {
        let road_id = layout.road_id().as_str();
        let now_ms = to_ms(now);
        self.write(|conn| {
            super::coord::lock_road(conn, road_id, now_ms)?;
            let current: Option<i64> = roads::table
                .find(road_id)
                .select(roads::current_revision)
                .first(conn)
                .optional()?;
            // A road the lock created is still at revision 0.
            let current_or_zero = current.unwrap_or(0);
            if let Some(expected) = expected
                && expected != current_or_zero
            {
                return Err(StoreError::RevisionConflict {
                    expected,
                    current: current_or_zero,
                });
            }
            let revision = current_or_zero + 1;
            match current {
                None => diesel::insert_into(roads::table)
                    .values((
                        roads::road_id.eq(road_id),
                        roads::current_revision.eq(revision),
                        roads::created_at_ms.eq(now_ms),
                    ))
                    .execute(conn)?,
                Some(_) => diesel::update(roads::table.find(road_id))
                    .set(roads::current_revision.eq(revision))
                    .execute(conn)?,
            };
            diesel::insert_into(layout_revisions::table)
                .values((
                    layout_revisions::road_id.eq(road_id),
                    layout_revisions::revision.eq(revision),
                    layout_revisions::created_at_ms.eq(now_ms),
                    layout_revisions::created_by.eq(created_by),
                    layout_revisions::based_on.eq(based_on),
                    layout_revisions::bays.eq(layout.bays.len() as i64),
                    layout_revisions::barriers.eq(layout.barriers.len() as i64),
                ))
                .execute(conn)?;

            for bay in &layout.bays {
                let owner: Option<String> = bays::table
                    .find(bay.bay_id.as_str())
                    .select(bays::road_id)
                    .first(conn)
                    .optional()?;
                match owner {
                    Some(owner) if owner != road_id => {
                        return Err(StoreError::BayOnOtherRoad {
                            bay_id: bay.bay_id.to_string(),
                            owner,
                        });
                    }
                    Some(_) => {
                        diesel::update(bays::table.find(bay.bay_id.as_str()))
                            .set(bays::retired_revision.eq(None::<i64>))
                            .execute(conn)?;
                    }
                    None => {
                        diesel::insert_into(bays::table)
                            .values((
                                bays::bay_id.eq(bay.bay_id.as_str()),
                                bays::road_id.eq(road_id),
                                bays::first_revision.eq(revision),
                            ))
                            .execute(conn)?;
                    }
                }
            }
            let kept: Vec<&str> = layout.bays.iter().map(|b| b.bay_id.as_str()).collect();
            let retiring = bays::table
                .filter(bays::road_id.eq(road_id))
                .filter(bays::retired_revision.is_null())
                .filter(bays::bay_id.ne_all(&kept));
            let retired: Vec<String> = retiring.clone().select(bays::bay_id).load(conn)?;
            diesel::update(retiring)
                .set(bays::retired_revision.eq(revision))
                .execute(conn)?;
            // A retired bay's parking session ends when its paint does.
            diesel::update(
                parking_sessions::table
                    .filter(parking_sessions::bay_id.eq_any(&retired))
                    .filter(parking_sessions::ended_at_ms.is_null()),
            )
            .set(parking_sessions::ended_at_ms.eq(now_ms))
            .execute(conn)?;

            let road = (
                road_id,
                "road",
                None,
                None,
                None,
                layout.road.feature(),
                layout.road.centre_line.bounding_rect(),
            );
            let bays = layout.bays.iter().map(|b| {
                (
                    b.bay_id.as_str(),
                    "bay",
                    Some(b.kind.as_str()),
                    b.max_stay_minutes.map(i64::from),
                    b.enforced_hours.map(|h| h.to_string()),
                    b.feature(),
                    b.polygon.bounding_rect(),
                )
            });
            let barriers = layout.barriers.iter().map(|b| {
                (
                    b.barrier_id.as_str(),
                    "barrier",
                    Some(b.kind.as_str()),
                    None,
                    None,
                    b.feature(),
                    b.polygon.bounding_rect(),
                )
            });
            let rows = std::iter::once(road)
                .chain(bays)
                .chain(barriers)
                .enumerate()
                .map(|(i, (id, ty, kind, max_stay, hours, feature, bbox))| {
                    let (min, max) =
                        bbox.map_or(((0.0, 0.0), (0.0, 0.0)), |r| (r.min().x_y(), r.max().x_y()));
                    Ok(NewFeature {
                        road_id,
                        revision,
                        ordinal: i as i64,
                        feature_id: id,
                        feature_type: ty,
                        kind,
                        max_stay_minutes: max_stay,
                        enforced_hours: hours,
                        feature: feature_json(&feature)?,
                        min_lon: min.0,
                        min_lat: min.1,
                        max_lon: max.0,
                        max_lat: max.1,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            // SQLite caps bound parameters per statement; 13 columns x 500 rows fits.
            for chunk in rows.chunks(500) {
                on_backend!(conn, c => diesel::insert_into(layout_features::table)
                    .values(chunk)
                    .execute(c))?;
            }
            let info = RevisionInfo {
                road_id: layout.road_id().clone(),
                revision,
                created_at: from_ms(now_ms)?,
                created_by: created_by.to_owned(),
                based_on,
                bays: layout.bays.len() as i64,
                barriers: layout.barriers.len() as i64,
            };
            super::coord::notify(conn, super::coord::LAYOUTS_CHANNEL, [road_id])?;
            Ok(info)
        })
    }

    /// Every road's current revision and layout, ordered by road id.
    pub fn current_layouts(&self) -> Result<Vec<StoredLayout>, StoreError> {
        let conn = &mut self.conn()?;
        let current: Vec<(String, i64)> = roads::table
            .select((roads::road_id, roads::current_revision))
            .order(roads::road_id)
            .load(conn)?;
        current
            .into_iter()
            .map(|(road_id, revision)| load_revision(conn, &road_id, revision))
            .collect()
    }

    /// One road's current revision and layout, if the road exists.
    pub fn current_layout(&self, road_id: &str) -> Result<Option<StoredLayout>, StoreError> {
        let conn = &mut self.conn()?;
        let revision: Option<i64> = roads::table
            .find(road_id)
            .select(roads::current_revision)
            .first(conn)
            .optional()?;
        match revision {
            Some(r) if r > 0 => load_revision(conn, road_id, r).map(Some),
            _ => Ok(None),
        }
    }

    /// Every bay a layout revision has retired and no later one brought
    /// back, in id order: their retained states are to be cleared.
    pub fn retired_bays(&self) -> Result<Vec<BayId>, StoreError> {
        let ids: Vec<String> = bays::table
            .filter(bays::retired_revision.is_not_null())
            .order(bays::bay_id)
            .select(bays::bay_id)
            .load(&mut self.conn()?)?;
        ids.iter()
            .map(|id| BayId::parse(id).map_err(|e| StoreError::Corrupt(format!("bay {id:?}: {e}"))))
            .collect()
    }

    /// One revision of a road, if both exist.
    pub fn layout_revision(
        &self,
        road_id: &RoadId,
        revision: i64,
    ) -> Result<Option<StoredLayout>, StoreError> {
        let conn = &mut self.conn()?;
        let exists: i64 = layout_revisions::table
            .filter(layout_revisions::road_id.eq(road_id.as_str()))
            .filter(layout_revisions::revision.eq(revision))
            .count()
            .get_result(conn)?;
        if exists == 0 {
            return Ok(None);
        }
        load_revision(conn, road_id.as_str(), revision).map(Some)
    }

    /// Every revision of a road, oldest first; empty when the road is unknown.
    pub fn revisions(&self, road_id: &RoadId) -> Result<Vec<RevisionInfo>, StoreError> {
        let rows: Vec<RevisionRow> = layout_revisions::table
            .filter(layout_revisions::road_id.eq(road_id.as_str()))
            .order(layout_revisions::revision)
            .load(&mut self.conn()?)?;
        rows.into_iter().map(RevisionInfo::try_from).collect()
    }
}

pub(super) fn load_revision(
    conn: &mut super::db::Db,
    road_id: &str,
    revision: i64,
) -> Result<StoredLayout, StoreError> {
    let info: RevisionRow = layout_revisions::table
        .find((road_id, revision))
        .first(conn)?;
    let texts: Vec<String> = layout_features::table
        .filter(layout_features::road_id.eq(road_id))
        .filter(layout_features::revision.eq(revision))
        .order(layout_features::ordinal)
        .select(layout_features::feature)
        .load(conn)?;
    let features = texts
        .iter()
        .map(|t| serde_json::from_str::<Feature>(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            StoreError::Corrupt(format!("a feature of {road_id} revision {revision}: {e}"))
        })?;
    let fc = FeatureCollection {
        bbox: None,
        features,
        foreign_members: None,
    };
    let mut layouts = parse_layouts(&fc).map_err(|problems| {
        StoreError::Corrupt(format!(
            "{road_id} revision {revision}: {}",
            problems
                .first()
                .map(ToString::to_string)
                .unwrap_or_default()
        ))
    })?;
    if layouts.len() != 1 {
        return Err(StoreError::Corrupt(format!(
            "{road_id} revision {revision} holds {} roads",
            layouts.len()
        )));
    }
    Ok(StoredLayout {
        info: info.try_into()?,
        layout: layouts.remove(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_removed_bay_is_retired_until_a_layout_brings_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(&format!("sqlite://{}", dir.path().join("k.db").display())).unwrap();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("geodata")
            .join("qingfeng-road.geojson");
        let full = crate::geodata::load_file(&path).unwrap().remove(0);
        let now = Utc.with_ymd_and_hms(2026, 11, 29, 0, 0, 0).unwrap();
        store
            .publish_layout(&full, "test", None, None, now)
            .unwrap();
        assert!(store.retired_bays().unwrap().is_empty());

        let mut less = full.clone();
        let gone = less.bays.remove(3).bay_id;
        store
            .publish_layout(&less, "test", None, None, now)
            .unwrap();
        assert_eq!(store.retired_bays().unwrap(), [gone]);

        store
            .publish_layout(&full, "test", None, None, now)
            .unwrap();
        assert!(store.retired_bays().unwrap().is_empty());
    }
}
