//! History benchmark: the read queries that must not slow down as years of
//! data pile up, on PostgreSQL with `events` partitioned by month.
//!
//! ```sh
//! cargo bench --bench history                               # a year at 1/300, 1/100, 1/33 of the full rate
//! cargo bench --bench history -- --scales 0.001,0.01 --queries 100
//! KERBSIDE_BENCH_DATABASE=postgres://USER@HOST:5432/ cargo bench --bench history
//! ```
//!
//! For each scale, in a fresh database of its own (`kerbside_bench_...` on
//! the server `KERBSIDE_BENCH_DATABASE` names, default
//! `postgres://postgres@127.0.0.1:5432/`, dropped after):
//!
//! 1. Opens it with `Store::open` (migrations), then runs one retention
//!    pass (`Store::retain`, 400 days kept), which makes the month
//!    partitions of the year, and times it.
//! 2. Loads, server-side (`generate_series`), a year ending now of a
//!    10,000-bay district (100 roads of 100 bays) at `scale` of a realistic
//!    rate: at full scale each bay sends 140 events a day (511 million a
//!    year; one in nine `occupied`, one in nine `vacated`, the rest
//!    heartbeats) and has 8 parking sessions a day (20 to 180 minutes; one
//!    in 200 lasts 30 to 100 hours; 60% of bays have one still open), and
//!    one session in 20 has an overstay violation (those of the last day
//!    open, the rest ticketed or dismissed). Rows have the shape ingest
//!    writes (`events` with device, event id, type, instants, bay and road;
//!    `parking_sessions`; `violations`). `event_keys` is not loaded: no
//!    query measured here reads it. Then `ANALYZE`.
//! 3. Times, over `--queries` (200) random instances each: the sessions of
//!    one road over one day of the year (`Store::sessions`, the first page
//!    of at most 10,000); the first page of a road's violations
//!    (`Store::violations_page`, 1,000, status `open` and all); and a bay's
//!    replay reads (its newest status event before a time six hours ago,
//!    then its status events since, as `store::ingest` replays a bay after
//!    a late event).
//!
//! 4. History (contract 6.3): rolls the whole district's year up from
//!    nothing (`Store::refresh_history` per road, what the background job
//!    does after an upgrade), then times a road's metrics for the year by
//!    day and for a week by hour (`Store::history_hours`, which first brings
//!    the road's roll-up up to now, and the buckets), one bay's week by
//!    hour (from its events and sessions), and an effect report's read of
//!    14 days each side of a random pivot.
//!
//! Prints a table (median and p99, ms) with a row per scale, then each
//! figure fitted against the number of events, linearly and on the log of
//! it, at the full-scale year; a JSON summary line last.

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, RunQueryDsl};
use kerbside::domain::history::{self, Bucket};
use kerbside::domain::ids::{BayId, RoadId};
use kerbside::domain::violations::ViolationStatus;
use kerbside::store::{HistoryFilter, Store};
use serde_json::json;

mod support;

/// Bays in the district, and bays per road.
const BAYS: i64 = 10_000;
const BAYS_PER_ROAD: i64 = 100;
/// A bay's events and sessions a day at full scale.
const EVENTS_PER_BAY_DAY: f64 = 140.0;
const SESSIONS_PER_BAY_DAY: f64 = 8.0;
const DAY_MS: i64 = 86_400_000;
const YEAR_DAYS: i64 = 365;

/// Events of the full-scale year.
fn full_year_events() -> f64 {
    BAYS as f64 * EVENTS_PER_BAY_DAY * YEAR_DAYS as f64
}

/// A small deterministic generator, so that every scale asks alike.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The admin URL and that of a database `name` on the same server.
fn urls(server: &str, name: &str) -> (String, String) {
    let base = match server.find("://") {
        Some(i) => match server[i + 3..].find('/') {
            Some(j) => &server[..i + 3 + j],
            None => server,
        },
        None => server,
    };
    (format!("{base}/postgres"), format!("{base}/{name}"))
}

fn exec(c: &mut PgConnection, sql: &str) {
    c.batch_execute(sql)
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
}

/// Loads the district's year at `scale`; returns (events, sessions,
/// violations) loaded.
fn load(url: &str, scale: f64, now_ms: i64) -> (i64, i64, i64) {
    let start_ms = now_ms - YEAR_DAYS * DAY_MS;
    let mut c = PgConnection::establish(url).expect("bench database");
    exec(
        &mut c,
        "SET synchronous_commit = off; SET maintenance_work_mem = '1GB'",
    );
    exec(
        &mut c,
        "INSERT INTO roads SELECT 'road-' || lpad(r::text, 3, '0'), 1, 0 FROM generate_series(0, 99) r",
    );
    exec(
        &mut c,
        &format!(
            "INSERT INTO bays SELECT 'bay-' || lpad(b::text, 5, '0'), \
             'road-' || lpad((b / {BAYS_PER_ROAD})::text, 3, '0'), 1, NULL \
             FROM generate_series(0, {}) b",
            BAYS - 1
        ),
    );

    // Each road's layout, published when the year began (the roll-up
    // reads bays' kinds and when they were on the layout from it): every
    // tenth bay a loading bay.
    exec(
        &mut c,
        &format!(
            "INSERT INTO layout_revisions SELECT road_id, 1, {start_ms}, 'bench', NULL, \
             {BAYS_PER_ROAD}, 0 FROM roads"
        ),
    );
    exec(
        &mut c,
        "INSERT INTO layout_features SELECT road_id, 1, \
           row_number() OVER (PARTITION BY road_id ORDER BY bay_id), bay_id, 'bay', \
           CASE WHEN right(bay_id, 1) = '0' THEN 'loading' ELSE 'standard' END, 120, \
           '08:00-20:00', '{}', 0, 0, 0, 0 FROM bays",
    );

    // Events: one statement per thirteenth of the year, on two
    // connections (two cores), each in time order as ingest appends them.
    let per_bay = (EVENTS_PER_BAY_DAY * scale * YEAR_DAYS as f64)
        .round()
        .max(1.0) as i64;
    let interval = (YEAR_DAYS * DAY_MS / per_bay).max(1);
    let months: Vec<(i64, i64)> = (0..13)
        .map(|m| (m * per_bay / 13, (m + 1) * per_bay / 13))
        .filter(|(a, b)| b > a)
        .collect();
    std::thread::scope(|s| {
        for part in 0..2 {
            let months = &months;
            s.spawn(move || {
                let mut c = PgConnection::establish(url).expect("bench database");
                exec(&mut c, "SET synchronous_commit = off");
                for (i, (lo, hi)) in months.iter().enumerate() {
                    if i % 2 != part {
                        continue;
                    }
                    exec(
                        &mut c,
                        &format!(
                            "INSERT INTO events (device_id, event_id, event_type, observed_at_ms, \
                             received_at_ms, bay_id, road_id) \
                             SELECT 'sensor-' || b, 'e' || i, \
                               CASE i % 9 WHEN 0 THEN CASE (i / 9) % 2 WHEN 0 THEN 'occupied' \
                               ELSE 'vacated' END ELSE 'heartbeat' END, t, t + 300, \
                               'bay-' || lpad(b::text, 5, '0'), \
                               'road-' || lpad((b / {BAYS_PER_ROAD})::text, 3, '0') \
                             FROM generate_series({lo}::bigint, {hi} - 1) i, \
                               generate_series(0::bigint, {bays}) b, \
                               LATERAL (SELECT {start_ms} + i * {interval} \
                                 + (b * 7919) % {interval} AS t) x",
                            hi = hi,
                            bays = BAYS - 1,
                        ),
                    );
                }
            });
        }
    });

    // Sessions, a bay's in a row; the last of 60% of bays still open.
    let sessions_per_bay = (SESSIONS_PER_BAY_DAY * scale * YEAR_DAYS as f64)
        .round()
        .max(1.0) as i64;
    let gap = YEAR_DAYS * DAY_MS / sessions_per_bay;
    exec(
        &mut c,
        &format!(
            "INSERT INTO parking_sessions (bay_id, road_id, started_at_ms, ended_at_ms, source, plate) \
             SELECT 'bay-' || lpad(b::text, 5, '0'), \
               'road-' || lpad((b / {BAYS_PER_ROAD})::text, 3, '0'), st, \
               CASE WHEN j = {last} AND b % 5 < 3 THEN NULL ELSE st + dur END, 'sensor', NULL \
             FROM generate_series(0::bigint, {last}) j, generate_series(0::bigint, {bays}) b, \
               LATERAL (SELECT {start_ms} + j * {gap} + (b * 104729 + j * 7) % GREATEST({gap} / 4, 1) \
                 AS st, \
                 CASE WHEN (b * 31 + j * 17) % 200 = 0 \
                   THEN 108000000 + ((b * 13 + j) % 70) * 3600000 \
                   ELSE 1200000 + ((b * 7 + j * 3) % 160) * 60000 END AS dur) x",
            last = sessions_per_bay - 1,
            bays = BAYS - 1,
        ),
    );
    // One session in twenty overstayed; the last day's are still open.
    exec(
        &mut c,
        &format!(
            "INSERT INTO violations (violation_id, kind, road_id, bay_id, plate, started_at_ms, \
             detected_at_ms, ended_at_ms, source, last_seen_ms, note, status, evidence, updated_at_ms) \
             SELECT 'v-' || session_id, 'overstay', road_id, bay_id, NULL, started_at_ms, \
               started_at_ms + 7200000, ended_at_ms, 'sensor', NULL, NULL, \
               CASE WHEN started_at_ms > {now_ms} - {DAY_MS} THEN 'open' \
                 WHEN session_id % 3 = 0 THEN 'dismissed' ELSE 'ticketed' END, '[]', \
               started_at_ms + 7200000 \
             FROM parking_sessions WHERE session_id % 20 = 0"
        ),
    );
    exec(&mut c, "ANALYZE");
    let count = |c: &mut PgConnection, table: &str| -> i64 {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query(format!("SELECT count(*) AS n FROM {table}"))
            .get_result::<N>(c)
            .map(|r| r.n)
            .unwrap_or(0)
    };
    (
        count(&mut c, "events"),
        count(&mut c, "parking_sessions"),
        count(&mut c, "violations"),
    )
}

/// Median and p99 of `samples` (ms).
fn stats(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| {
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples.get(i).copied().unwrap_or(f64::NAN)
    };
    (at(0.5), at(0.99))
}

fn time<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let out = f();
    (t.elapsed().as_secs_f64() * 1000.0, out)
}

#[derive(Debug, Clone)]
struct Row {
    scale: f64,
    events: i64,
    sessions: i64,
    violations: i64,
    load_s: f64,
    retain_ms: f64,
    /// (name, median, p99), ms.
    figures: Vec<(&'static str, f64, f64)>,
}

/// Replay reads of one bay, as `store::ingest::replay_bay` runs them.
fn replay(c: &mut PgConnection, bay: &str, since_ms: i64) -> usize {
    #[derive(diesel::QueryableByName)]
    #[allow(dead_code)]
    struct Ev {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        observed_at_ms: i64,
        #[diesel(sql_type = diesel::sql_types::Text)]
        event_type: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        plate: Option<String>,
    }
    #[derive(diesel::QueryableByName)]
    #[allow(dead_code)]
    struct Max {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
        m: Option<i64>,
    }
    use diesel::sql_types::{BigInt, Text};
    diesel::sql_query(
        "SELECT max(observed_at_ms) AS m FROM events WHERE bay_id = $1 \
         AND event_type IN ('occupied', 'vacated', 'observed') AND observed_at_ms < $2",
    )
    .bind::<Text, _>(bay)
    .bind::<BigInt, _>(since_ms)
    .get_result::<Max>(c)
    .expect("replay: before");
    diesel::sql_query(
        "SELECT observed_at_ms, event_type, plate FROM events WHERE bay_id = $1 \
         AND event_type IN ('occupied', 'vacated', 'observed') AND observed_at_ms >= $2 \
         ORDER BY observed_at_ms, seq",
    )
    .bind::<Text, _>(bay)
    .bind::<BigInt, _>(since_ms)
    .load::<Ev>(c)
    .expect("replay: since")
    .len()
}

fn measure(url: &str, scale: f64, queries: usize, now: DateTime<Utc>) -> Row {
    let store = Store::open(url).expect("open the bench database");
    let (retain_ms, retained) = time(|| {
        store
            .retain(now, Duration::days(400), Duration::days(400))
            .expect("retention pass")
    });
    eprintln!(
        "scale {scale}: {} partitions made in {retain_ms:.0} ms; loading",
        retained.partitions_created.len()
    );
    let (load_ms, (events, sessions, violations)) =
        time(|| load(url, scale, now.timestamp_millis()));
    eprintln!(
        "scale {scale}: {events} events, {sessions} sessions, {violations} violations \
         loaded in {:.0} s",
        load_ms / 1000.0
    );
    // A retention pass over the loaded year: what the hourly job costs.
    let (retain_ms, _) = time(|| {
        store
            .retain(now, Duration::days(400), Duration::days(30))
            .expect("retention pass")
    });

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let road = |rng: &mut Rng| {
        RoadId::parse(&format!(
            "road-{:03}",
            rng.below((BAYS / BAYS_PER_ROAD) as u64)
        ))
        .expect("road id")
    };
    let mut figures = Vec::new();
    let mut sizes = Vec::new();

    let mut samples = Vec::with_capacity(queries);
    for _ in 0..queries {
        let r = road(&mut rng);
        let from = now - Duration::days(1 + rng.below(YEAR_DAYS as u64 - 1) as i64);
        let (ms, got) = time(|| {
            store
                .sessions(&r, from, from + Duration::days(1), None, 10_000)
                .expect("sessions")
        });
        samples.push(ms);
        sizes.push(got.len());
    }
    let (p50, p99) = stats(samples);
    figures.push(("sessions_day", p50, p99));
    let per_answer = sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64;

    for (name, status) in [
        ("violations_open", Some(ViolationStatus::Open)),
        ("violations_all", None),
    ] {
        let mut samples = Vec::with_capacity(queries);
        for _ in 0..queries {
            let r = road(&mut rng);
            let (ms, _) = time(|| {
                store
                    .violations_page(&r, status, None, 1000)
                    .expect("violations")
            });
            samples.push(ms);
        }
        let (p50, p99) = stats(samples);
        figures.push((name, p50, p99));
    }

    let mut c = PgConnection::establish(url).expect("bench database");
    let mut samples = Vec::with_capacity(queries);
    for _ in 0..queries {
        let bay = format!("bay-{:05}", rng.below(BAYS as u64));
        let since = now.timestamp_millis() - 6 * 3_600_000;
        let (ms, _) = time(|| replay(&mut c, &bay, since));
        samples.push(ms);
    }
    let (p50, p99) = stats(samples);
    figures.push(("replay_6h", p50, p99));

    // History (contract 6.3). First the roll-up of the whole district's
    // year from nothing, as the background job does after an upgrade.
    let staleness = Duration::minutes(30);
    let floor = now - Duration::days(400);
    let roads: Vec<RoadId> = store.road_ids().expect("roads");
    let (rollup_ms, _) = time(|| {
        for r in &roads {
            store
                .refresh_history(r, now, staleness, floor)
                .expect("roll-up");
        }
    });
    eprintln!(
        "scale {scale}: the district's year rolled up in {:.1} s ({:.0} ms a road of {BAYS_PER_ROAD} bays)",
        rollup_ms / 1000.0,
        rollup_ms / roads.len().max(1) as f64
    );
    let tz = chrono_tz::Asia::Shanghai;
    let report = |r: &RoadId, filter: &HistoryFilter, from, to, bucket| {
        let spans = history::buckets(&tz, bucket, from, to);
        let (a, b) = (spans[0].0, spans[spans.len() - 1].1);
        let hours = store
            .history_hours(r, filter, a, b, now, staleness, floor)
            .expect("history hours");
        spans
            .iter()
            .map(|&(s, e)| history::bucket_figures(&hours, s, e, now))
            .collect::<Vec<_>>()
            .len()
    };
    let road_only = HistoryFilter::default();
    let mut timed = |name: &'static str, f: &mut dyn FnMut(&mut Rng) -> usize| {
        let mut samples = Vec::with_capacity(queries);
        for _ in 0..queries {
            let (ms, _) = time(|| f(&mut rng));
            samples.push(ms);
        }
        let (p50, p99) = stats(samples);
        figures.push((name, p50, p99));
    };
    // A road's metrics: the year by day, a week by hour; each first
    // brings the road's roll-up up to now (the current hour rebuilt).
    timed("metrics_year_days", &mut |rng| {
        report(
            &road(rng),
            &road_only,
            now - Duration::days(365),
            now,
            Bucket::Day,
        )
    });
    timed("metrics_week_hours", &mut |rng| {
        let to = now - Duration::days(rng.below(300) as i64);
        report(
            &road(rng),
            &road_only,
            to - Duration::days(7),
            to,
            Bucket::Hour,
        )
    });
    // One bay's week by hour: read from its events and sessions directly.
    timed("metrics_bay_week", &mut |rng| {
        let bay = format!("bay-{:05}", rng.below(BAYS as u64));
        let r = RoadId::parse(&format!("road-{}", &bay[4..7])).expect("road id");
        let filter = HistoryFilter {
            bay: Some(BayId::parse(&bay).expect("bay id")),
            kind: None,
        };
        let to = now - Duration::days(rng.below(300) as i64);
        report(&r, &filter, to - Duration::days(7), to, Bucket::Hour)
    });
    // An effect report: 14 days each side of a pivot, one read of hours.
    timed("effect_14d", &mut |rng| {
        let pivot = now - Duration::days(15 + rng.below(330) as i64);
        let ((b0, _), (_, a1)) =
            history::effect_windows(pivot.timestamp_millis(), 14, now.timestamp_millis());
        let at = |ms| DateTime::<Utc>::from_timestamp_millis(ms).expect("instant");
        store
            .history_hours(
                &road(rng),
                &road_only,
                at(b0),
                at(a1),
                now,
                staleness,
                floor,
            )
            .expect("history hours")
            .len()
    });
    figures.push((
        "district_rollup_year_s",
        rollup_ms / 1000.0,
        rollup_ms / 1000.0,
    ));
    eprintln!("scale {scale}: sessions per one-day answer {per_answer:.1}");

    Row {
        scale,
        events,
        sessions,
        violations,
        load_s: load_ms / 1000.0,
        retain_ms,
        figures,
    }
}

/// Least squares `y = a + b x`; returns `(a, b)`.
fn fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (my - b * mx, b)
}

fn main() {
    let server = std::env::var("KERBSIDE_BENCH_DATABASE")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/".to_owned());
    let scales: Vec<f64> = support::arg("--scales")
        .unwrap_or_else(|| "0.00333,0.01,0.03".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|s: &f64| *s > 0.0 && *s <= 1.0)
        .collect();
    let queries = support::num("--queries").unwrap_or(200.0).max(1.0) as usize;
    let now = Utc::now();

    let mut rows = Vec::new();
    for (i, &scale) in scales.iter().enumerate() {
        let name = format!("kerbside_bench_{}_{i}", std::process::id());
        let (admin_url, url) = urls(&server, &name);
        let mut admin = PgConnection::establish(&admin_url)
            .unwrap_or_else(|e| panic!("KERBSIDE_BENCH_DATABASE: cannot reach {admin_url}: {e}"));
        exec(&mut admin, &format!("CREATE DATABASE {name}"));
        let row = std::panic::catch_unwind(|| measure(&url, scale, queries, now));
        exec(
            &mut admin,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
        match row {
            Ok(r) => rows.push(r),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    let names: Vec<&str> = rows
        .first()
        .map(|r| r.figures.iter().map(|f| f.0).collect())
        .unwrap_or_default();
    print!(
        "{:>7} {:>12} {:>10} {:>9} {:>7} {:>9}",
        "scale", "events", "sessions", "viol.", "load s", "retain ms"
    );
    for n in &names {
        print!(" {:>22}", format!("{n} p50/p99"));
    }
    println!();
    for r in &rows {
        print!(
            "{:>7.4} {:>12} {:>10} {:>9} {:>7.0} {:>9.1}",
            r.scale, r.events, r.sessions, r.violations, r.load_s, r.retain_ms
        );
        for f in &r.figures {
            print!(" {:>22}", format!("{:.2}/{:.2}", f.1, f.2));
        }
        println!();
    }
    let full = full_year_events();
    let mut extrapolated = serde_json::Map::new();
    if rows.len() >= 2 {
        println!(
            "\nat the full-scale year ({:.0} million events), ms:",
            full / 1e6
        );
        println!("{:>22} {:>14} {:>14}", "query p50", "linear fit", "log fit");
        for (k, n) in names.iter().enumerate() {
            let lin: Vec<(f64, f64)> = rows
                .iter()
                .map(|r| (r.events as f64, r.figures[k].1))
                .collect();
            let log: Vec<(f64, f64)> = lin.iter().map(|(x, y)| (x.ln(), *y)).collect();
            let (a, b) = fit(&lin);
            let (la, lb) = fit(&log);
            let (at_lin, at_log) = (a + b * full, la + lb * full.ln());
            println!("{n:>22} {at_lin:>14.2} {at_log:>14.2}");
            extrapolated.insert(
                n.to_string(),
                json!({"linear_ms": at_lin, "log_ms": at_log}),
            );
        }
    }
    let summary = json!({
        "bench": "history",
        "bays": BAYS,
        "queries": queries,
        "rows": rows.iter().map(|r| json!({
            "scale": r.scale, "events": r.events, "sessions": r.sessions,
            "violations": r.violations, "load_s": r.load_s, "retain_ms": r.retain_ms,
            "figures": r.figures.iter().map(|f| json!({"query": f.0, "p50_ms": f.1, "p99_ms": f.2}))
                .collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "full_year_events": full,
        "extrapolated_p50": extrapolated,
    });
    println!("{summary}");
}
