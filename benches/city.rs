//! City benchmark: `GET /v1/public/free-spaces` over a synthetic city of a
//! million bays, served by the real binary in a process of its own.
//!
//! ```sh
//! cargo bench --bench city                                  # 1,000,000 bays, 20 s of queries
//! cargo bench --bench city -- --bays 200000 --seconds 10 --connections 4
//! cargo bench --bench city -- --dir /tmp/city               # keep the store; reused next time
//! ```
//!
//! 1. Generates the city into a fresh SQLite store through the crate's own
//!    store API (`Store::publish_layout`, one revision per road): a grid of
//!    streets 100 m apart, cut into roads of 1 km, 12 bays a side per block,
//!    parallel bays 2.5 x 6 m. The same city is built in PostGIS by
//!    `benches/postgis/run.sh`. Bay states are then written for every bay,
//!    heard from in the last ten minutes: 40% free, the rest occupied with
//!    an open session (the same bays are free in PostGIS).
//! 2. Starts `kerbside serve` on that store and times it from process start
//!    until `/healthz` answers 200; reads its VmRSS from /proc.
//! 3. Queries free spaces from random points over the city on keep-alive
//!    connections from this process (one thread per connection, closed
//!    loop), and reports queries/s, p50/p99 latency and results per answer.
//!
//! Prints a JSON summary line last. Both processes share the machine's cores.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::{Connection, RunQueryDsl, sqlite::SqliteConnection};
use kerbside::domain::layout::parse_layouts;
use kerbside::spatial::LocalFrame;
use kerbside::store::Store;
use serde_json::{Value, json};

#[path = "../tests/support/mosquitto.rs"]
mod mosquitto;

/// South-west corner of the city (Jiaxing).
const LON0: f64 = 120.70;
const LAT0: f64 = 30.70;
/// Streets every this many metres, both ways.
const BLOCK_M: f64 = 100.0;
/// Blocks per road (a road is 1 km of one street).
const BLOCKS_PER_ROAD: usize = 10;
/// Bays per side of a block, and their pitch, length and depth.
const BAYS_PER_SIDE: usize = 12;
const PITCH_M: f64 = 6.5;
const BAY_LEN_M: f64 = 6.0;
const BAY_DEPTH_M: f64 = 2.5;
/// From the street's centre line to the bays' kerb edge.
const KERB_M: f64 = 5.0;
/// Clear of the junction at each end of a block.
const JUNCTION_M: f64 = 10.0;

struct Args {
    bays: usize,
    seconds: u64,
    warmup: u64,
    connections: usize,
    radius_m: u32,
    limit: u32,
    free_percent: u64,
    dir: Option<PathBuf>,
    log: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        bays: 1_000_000,
        seconds: 20,
        warmup: 3,
        connections: 4,
        radius_m: 500,
        limit: 20,
        free_percent: 40,
        dir: None,
        log: None,
    };
    let argv: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        argv.iter()
            .position(|x| x == name)
            .and_then(|i| argv.get(i + 1))
            .cloned()
    };
    let num = |name: &str| value(name).and_then(|v| v.replace('_', "").parse::<u64>().ok());
    if let Some(v) = num("--bays") {
        a.bays = v as usize;
    }
    if let Some(v) = num("--seconds") {
        a.seconds = v;
    }
    if let Some(v) = num("--warmup") {
        a.warmup = v;
    }
    if let Some(v) = num("--connections") {
        a.connections = v as usize;
    }
    if let Some(v) = num("--radius") {
        a.radius_m = v as u32;
    }
    if let Some(v) = num("--limit") {
        a.limit = v as u32;
    }
    if let Some(v) = num("--free-percent") {
        a.free_percent = v;
    }
    a.dir = value("--dir").map(PathBuf::from);
    a.log = value("--log");
    a
}

/// The city's streets: `n` lines each way, `n - 1` blocks along each.
fn grid_lines(bays: usize) -> usize {
    let per_edge = 2 * BAYS_PER_SIDE;
    let mut n = 2;
    while 2 * n * (n - 1) * per_edge < bays {
        n += 1;
    }
    n
}

/// The bay's global number, as `benches/postgis/city.sql` numbers it:
/// direction (0 east-west, 1 north-south), line, block, side, place.
fn bay_number(n: usize, dir: usize, line: usize, block: usize, side: usize, k: usize) -> u64 {
    ((((dir * n + line) * (n - 1) + block) * 2 + side) * BAYS_PER_SIDE + k) as u64
}

/// Whether bay `g` is free: the same integer hash as in PostGIS.
fn is_free(g: u64, free_percent: u64) -> bool {
    (g * 2_654_435_761) % 4_294_967_296 % 100 < free_percent
}

fn kind_of(g: u64) -> (&'static str, Option<u32>) {
    match g % 50 {
        0 => ("accessible", None),
        10 => ("ev", Some(240)),
        25 => ("loading", Some(30)),
        40 => ("motorcycle", Some(120)),
        _ => ("standard", Some(120)),
    }
}

/// One road of the city as a GeoJSON FeatureCollection, and its bays'
/// (id, global number).
fn road_geojson(
    frame: &LocalFrame,
    n: usize,
    dir: usize,
    line: usize,
    section: usize,
    total: usize,
) -> (Value, Vec<(String, u64)>) {
    let deg = |along: f64, across: f64| {
        // East-west streets run along x at y = line; north-south along y.
        let (x, y) = if dir == 0 {
            (along, line as f64 * BLOCK_M + across)
        } else {
            (line as f64 * BLOCK_M + across, along)
        };
        let c = frame.to_degrees(geo::Coord { x, y });
        json!([c.x, c.y])
    };
    let road_id = format!(
        "{}-{line:03}-{section:02}",
        if dir == 0 { "ew" } else { "ns" }
    );
    let first = section * BLOCKS_PER_ROAD;
    let last = ((section + 1) * BLOCKS_PER_ROAD).min(n - 1);
    let street = if dir == 0 { "East-West" } else { "North-South" };
    let mut features = vec![json!({
        "type": "Feature", "id": road_id,
        "properties": {"feature_type": "road", "road_id": road_id,
                       "name": format!("{street} Street {line}, block {first} to {last}")},
        "geometry": {"type": "LineString", "coordinates": [
            deg(first as f64 * BLOCK_M, 0.0), deg(last as f64 * BLOCK_M, 0.0)]},
    })];
    let sides = if dir == 0 {
        ["north", "south"]
    } else {
        ["east", "west"]
    };
    let mut ids = Vec::new();
    for block in first..last {
        for (side, side_name) in sides.iter().enumerate() {
            let sign = if side == 0 { 1.0 } else { -1.0 };
            let (a0, a1) = (sign * KERB_M, sign * (KERB_M + BAY_DEPTH_M));
            for k in 0..BAYS_PER_SIDE {
                let g = bay_number(n, dir, line, block, side, k);
                if g as usize >= total {
                    continue;
                }
                let s0 = block as f64 * BLOCK_M + JUNCTION_M + k as f64 * PITCH_M;
                let s1 = s0 + BAY_LEN_M;
                let bay_id = format!("{road_id}-{}-{block:03}-{k:02}", &side_name[..1]);
                let (kind, max_stay) = kind_of(g);
                let mut props = json!({"feature_type": "bay", "bay_id": bay_id, "road_id": road_id,
                    "kind": kind, "enforced_hours": "08:00-20:00", "side": side_name});
                if let Some(m) = max_stay {
                    props["max_stay_minutes"] = json!(m);
                }
                features.push(json!({
                    "type": "Feature", "id": bay_id, "properties": props,
                    "geometry": {"type": "Polygon", "coordinates": [[
                        deg(s0, a0), deg(s1, a0), deg(s1, a1), deg(s0, a1), deg(s0, a0)]]},
                }));
                ids.push((bay_id, g));
            }
        }
    }
    (
        json!({"type": "FeatureCollection", "features": features}),
        ids,
    )
}

/// Publishes every road of the city; gives back (road count, bays with
/// their global numbers and roads).
fn generate(db: &Path, total: usize) -> (usize, Vec<(String, String, u64)>) {
    let store = Store::open(&format!("sqlite://{}", db.display())).expect("store opens");
    store.spawn_checkpointer(Duration::from_secs(1));
    let frame = LocalFrame::at(LON0, LAT0);
    let n = grid_lines(total);
    let now = Utc::now();
    let mut roads = 0;
    let mut bays = Vec::with_capacity(total);
    let t0 = Instant::now();
    for (dir, line, section) in road_sections(n, total) {
        let (fc, ids) = road_geojson(&frame, n, dir, line, section, total);
        let fc = serde_json::from_value(fc).expect("a FeatureCollection");
        let layout = parse_layouts(&fc).expect("the city parses").remove(0);
        let road_id = layout.road_id().to_string();
        store
            .publish_layout(&layout, "city bench", None, None, now)
            .expect("layout stored");
        roads += 1;
        bays.extend(ids.into_iter().map(|(b, g)| (b, road_id.clone(), g)));
        if roads % 500 == 0 {
            eprintln!(
                "  {roads} roads, {} bays, {:.0} s",
                bays.len(),
                t0.elapsed().as_secs_f64()
            );
        }
    }
    (roads, bays)
}

/// Every road of the city that holds bays, as (direction, line, section).
fn road_sections(n: usize, total: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    (0..2).flat_map(move |dir| {
        (0..n).flat_map(move |line| {
            (0..(n - 1).div_ceil(BLOCKS_PER_ROAD))
                .filter(move |section| {
                    (bay_number(n, dir, line, section * BLOCKS_PER_ROAD, 0, 0) as usize) < total
                })
                .map(move |section| (dir, line, section))
        })
    })
}

/// Every bay heard from within the last ten minutes: free or occupied (with
/// an open session) by [`is_free`].
fn write_states(db: &Path, bays: &[(String, String, u64)], free_percent: u64) {
    let mut conn = SqliteConnection::establish(&db.display().to_string()).expect("sqlite");
    let now = Utc::now().timestamp_millis();
    let mut rng = SplitMix(7);
    conn.transaction::<_, diesel::result::Error, _>(|c| {
        diesel::sql_query("DELETE FROM violation_history").execute(c)?;
        diesel::sql_query("DELETE FROM violations").execute(c)?;
        diesel::sql_query("DELETE FROM parking_sessions").execute(c)?;
        diesel::sql_query("DELETE FROM bay_states").execute(c)?;
        for chunk in bays.chunks(500) {
            let mut states = String::from(
                "INSERT INTO bay_states (bay_id, status, since_ms, status_event_ms, last_event_at_ms, updated_at_ms) VALUES ",
            );
            let mut sessions = String::from(
                "INSERT INTO parking_sessions (bay_id, road_id, started_at_ms, ended_at_ms, source, plate) VALUES ",
            );
            let mut any_session = false;
            for (i, (bay, road, g)) in chunk.iter().enumerate() {
                let free = is_free(*g, free_percent);
                // Parked 10 to 110 minutes ago: a city in its day, where a
                // few (the loading bays' 30-minute limits) have overstayed.
                let since = now - (rng.next() % 6_000_000) as i64 - 600_000;
                let heard = now - (rng.next() % 600_000) as i64;
                let status = if free { "free" } else { "occupied" };
                if i > 0 {
                    states.push(',');
                }
                states.push_str(&format!(
                    "('{bay}','{status}',{since},{since},{heard},{now})"
                ));
                if !free {
                    if any_session {
                        sessions.push(',');
                    }
                    any_session = true;
                    sessions.push_str(&format!("('{bay}','{road}',{since},NULL,'sensor',NULL)"));
                }
            }
            diesel::sql_query(states).execute(c)?;
            if any_session {
                diesel::sql_query(sessions).execute(c)?;
            }
        }
        Ok(())
    })
    .expect("states written");
    diesel::sql_query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .expect("checkpoint");
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// kB figures from /proc/<pid>/status.
fn proc_status(pid: u32) -> std::collections::HashMap<String, u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let kb = v.trim().strip_suffix(" kB")?.parse().ok()?;
            Some((k.to_owned(), kb))
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(port: u16) -> std::io::Result<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    /// GET `path`: status and body.
    fn get(&mut self, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        write!(
            self.writer,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: kerbside-city-bench\r\n\r\n"
        )?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok((status, body))
    }
}

struct Service {
    child: Child,
    port: u16,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `kerbside serve` on `db`; gives it back once `/healthz` is 200,
/// with the seconds that took.
fn start_service(db: &Path, dir: &Path, log: Option<&str>, mqtt_url: &str) -> (Service, f64) {
    let port = free_port();
    let log_file = std::fs::File::create(dir.join("kerbside.log")).expect("log file");
    let empty = dir.join("no-geodata");
    std::fs::create_dir_all(&empty).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kerbside"));
    cmd.arg("serve")
        .arg("--database-url")
        .arg(format!("sqlite://{}", db.display()))
        .arg("--http")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--mqtt-url")
        .arg(mqtt_url)
        .arg("--geodata")
        .arg(&empty)
        .arg("--public-rate-per-minute")
        .arg("1000000000")
        .arg("--devices")
        .arg("open")
        .stdout(Stdio::null())
        .stderr(log_file);
    if let Some(filter) = log {
        cmd.env("KERBSIDE_LOG", filter);
    }
    let t0 = Instant::now();
    let child = cmd.spawn().expect("kerbside starts");
    let service = Service { child, port };
    loop {
        if let Ok(mut c) = Conn::open(port)
            && let Ok((200, _)) = c.get("/healthz")
        {
            return (service, t0.elapsed().as_secs_f64());
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "kerbside did not become healthy; see {}",
            dir.join("kerbside.log").display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

struct Load {
    latencies_us: Vec<u32>,
    results: u64,
    empty: u64,
    errors: u64,
}

/// Closed-loop load on `connections` connections for `seconds`; latencies
/// are recorded only after `warmup` seconds.
fn load(port: u16, a: &Args, extent_m: f64) -> (Load, f64) {
    let frame = LocalFrame::at(LON0, LAT0);
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..a.connections)
        .map(|t| {
            let (stop, measuring) = (stop.clone(), measuring.clone());
            let (radius, limit) = (a.radius_m, a.limit);
            std::thread::spawn(move || {
                let mut rng = SplitMix(1000 + t as u64);
                let mut conn = Conn::open(port).expect("connect");
                let mut out = Load {
                    latencies_us: Vec::with_capacity(1 << 20),
                    results: 0,
                    empty: 0,
                    errors: 0,
                };
                while !stop.load(Ordering::Relaxed) {
                    let x = rng.below((extent_m * 100.0) as u64) as f64 / 100.0;
                    let y = rng.below((extent_m * 100.0) as u64) as f64 / 100.0;
                    let c = frame.to_degrees(geo::Coord { x, y });
                    let path = format!(
                        "/v1/public/free-spaces?lon={:.7}&lat={:.7}&radius_m={radius}&limit={limit}",
                        c.x, c.y
                    );
                    let t0 = Instant::now();
                    let answer = conn.get(&path);
                    let us = t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                    if !measuring.load(Ordering::Relaxed) {
                        continue;
                    }
                    match answer {
                        Ok((200, body)) => {
                            let n = body.windows(8).filter(|w| w == b"\"bay_id\"").count() as u64;
                            out.results += n;
                            out.empty += u64::from(n == 0);
                            out.latencies_us.push(us);
                        }
                        Ok(_) => out.errors += 1,
                        Err(_) => {
                            out.errors += 1;
                            conn = Conn::open(port).expect("reconnect");
                        }
                    }
                }
                out
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(a.warmup));
    measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(a.seconds));
    measuring.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut all = Load {
        latencies_us: Vec::new(),
        results: 0,
        empty: 0,
        errors: 0,
    };
    for t in threads {
        let l = t.join().expect("load thread");
        all.latencies_us.extend(l.latencies_us);
        all.results += l.results;
        all.empty += l.empty;
        all.errors += l.errors;
    }
    all.latencies_us.sort_unstable();
    (all, elapsed)
}

fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted_us[i]) / 1000.0
}

fn main() {
    let a = args();
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = a.dir.clone().unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("city.db");
    let done = dir.join("city.done");
    let n = grid_lines(a.bays);
    let extent_m = (n - 1) as f64 * BLOCK_M;

    let reuse = std::fs::read_to_string(&done).ok().as_deref() == Some(&a.bays.to_string());
    let t0 = Instant::now();
    let (roads, bays) = if reuse {
        eprintln!("reusing the city in {}", dir.display());
        let store = Store::open(&format!("sqlite://{}", db.display())).expect("store opens");
        let layouts = store.current_layouts().expect("layouts");
        let roads = layouts.len();
        let mut bays = Vec::with_capacity(a.bays);
        for l in layouts {
            for b in l.layout.bays {
                bays.push((b.bay_id.to_string(), l.info.road_id.to_string(), 0));
            }
        }
        // Recover each bay's global number from its id (road and place).
        let numbers = numbers_by_id(n, a.bays);
        for b in &mut bays {
            b.2 = numbers[&b.0];
        }
        (roads, bays)
    } else {
        let _ = std::fs::remove_file(&db);
        eprintln!(
            "generating {} bays on a {n} x {n} street grid ({:.1} km square) in {}",
            a.bays,
            extent_m / 1000.0,
            dir.display()
        );
        generate(&db, a.bays)
    };
    let generate_s = t0.elapsed().as_secs_f64();
    assert_eq!(bays.len(), a.bays, "bays generated");
    let t1 = Instant::now();
    write_states(&db, &bays, a.free_percent);
    let states_s = t1.elapsed().as_secs_f64();
    std::fs::write(&done, a.bays.to_string()).unwrap();
    let db_mib = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;
    let free = bays.iter().filter(|b| is_free(b.2, a.free_percent)).count();
    drop(bays);
    eprintln!(
        "{roads} roads, {} bays ({free} free); layouts {generate_s:.1} s, states {states_s:.1} s; store {db_mib:.0} MiB",
        a.bays
    );

    // The production path for a city: an external broker (a private
    // Mosquitto), which holds the retained state of every bay.
    let broker = mosquitto::PrivateMosquitto::start(&dir, 1000);
    let (service, startup_s) = start_service(&db, &dir, a.log.as_deref(), &broker.url());
    let pid = service.child.id();
    // The first sweep judges every open session and publishes every bay's
    // state once: wait for it, so that the load meets a service at rest.
    let t2 = Instant::now();
    loop {
        let sweeps = Conn::open(service.port)
            .ok()
            .and_then(|mut c| c.get("/metrics").ok())
            .and_then(|(_, body)| {
                String::from_utf8_lossy(&body).lines().find_map(|l| {
                    l.strip_prefix("kerbside_sweeps_total ")?
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
            })
            .unwrap_or(0);
        if sweeps >= 1 {
            break;
        }
        assert!(
            t2.elapsed() < Duration::from_secs(600),
            "no sweep within 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let first_sweep_s = t2.elapsed().as_secs_f64() + startup_s;
    eprintln!("first sweep done {first_sweep_s:.1} s after start");
    let at_start = proc_status(pid);
    eprintln!(
        "kerbside serving after {startup_s:.2} s; VmRSS {} MiB",
        at_start.get("VmRSS").copied().unwrap_or(0) / 1024
    );

    let (l, elapsed) = load(service.port, &a, extent_m);
    let after = proc_status(pid);
    let broker_after = proc_status(broker.pid());
    drop(service);
    let answers = l.latencies_us.len() as u64;
    let qps = answers as f64 / elapsed;
    let mib = |m: &std::collections::HashMap<String, u64>, k: &str| {
        m.get(k).copied().unwrap_or(0) as f64 / 1024.0
    };
    let summary = json!({
        "bench": "city",
        "bays": a.bays,
        "roads": roads,
        "free_bays": free,
        "extent_km": extent_m / 1000.0,
        "store_mib": db_mib.round(),
        "generate_s": (generate_s * 10.0).round() / 10.0,
        "startup_s": (startup_s * 100.0).round() / 100.0,
        "first_sweep_s": (first_sweep_s * 10.0).round() / 10.0,
        "rss_mib_at_start": mib(&at_start, "VmRSS").round(),
        "rss_mib": mib(&after, "VmRSS").round(),
        "rss_anon_mib": mib(&after, "RssAnon").round(),
        "rss_file_mib": mib(&after, "RssFile").round(),
        "hwm_mib": mib(&after, "VmHWM").round(),
        "broker_rss_mib": mib(&broker_after, "VmRSS").round(),
        "connections": a.connections,
        "seconds": a.seconds,
        "radius_m": a.radius_m,
        "limit": a.limit,
        "queries": answers,
        "qps": qps.round(),
        "p50_ms": (percentile_ms(&l.latencies_us, 0.50) * 1000.0).round() / 1000.0,
        "p99_ms": (percentile_ms(&l.latencies_us, 0.99) * 1000.0).round() / 1000.0,
        "mean_results": if answers > 0 { l.results as f64 / answers as f64 } else { 0.0 },
        "empty_answers": l.empty,
        "errors": l.errors,
        "log": a.log.as_deref().unwrap_or("default"),
        "search_only_qps_one_thread": search_only(&db, extent_m).round(),
    });
    println!("{summary}");
}

/// The search alone, in this process on one thread: the street built from
/// the same store, and the free-space query the endpoint runs (nearest
/// free bays, 500 m, 20) from random points for five seconds. What HTTP
/// and JSON add is the difference from the endpoint's figure.
fn search_only(db: &Path, extent_m: f64) -> f64 {
    use kerbside::domain::events::Position;
    use kerbside::domain::occupancy::BayStatus;
    let store = Store::open(&format!("sqlite://{}", db.display())).expect("store opens");
    let street = kerbside::street::Street::new(
        store.current_layouts().expect("layouts"),
        store.bay_states().expect("states"),
        chrono::Duration::minutes(30),
    );
    let frame = LocalFrame::at(LON0, LAT0);
    let mut rng = SplitMix(11);
    let now = Utc::now();
    let (mut n, mut found) = (0u64, 0usize);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        let x = rng.below((extent_m * 100.0) as u64) as f64 / 100.0;
        let y = rng.below((extent_m * 100.0) as u64) as f64 / 100.0;
        let c = frame.to_degrees(geo::Coord { x, y });
        let reports = street.reports_at(now);
        found += reports
            .map()
            .nearest_bays(Position { lon: c.x, lat: c.y }, 500.0, 20, |o, _| {
                reports.of_ordinal(o).status == BayStatus::Free
            })
            .len();
        n += 1;
    }
    assert!(found as u64 >= n * 19, "the search finds free bays");
    n as f64 / t0.elapsed().as_secs_f64()
}

/// Every bay id of the city mapped to its global number.
fn numbers_by_id(n: usize, total: usize) -> std::collections::HashMap<String, u64> {
    let frame = LocalFrame::at(LON0, LAT0);
    let mut out = std::collections::HashMap::with_capacity(total);
    for (dir, line, section) in road_sections(n, total) {
        out.extend(road_geojson(&frame, n, dir, line, section, total).1);
    }
    out
}
