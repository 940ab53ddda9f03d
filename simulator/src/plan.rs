//! The simulation itself, as a pure function: a street, a window of time
//! and a seed in; every MQTT message to publish (with when) and the ground
//! truth out. Nothing here reads a clock or the network, so one seed and
//! one end instant always give the same street.

use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use kerbside::domain::devices::DeviceKind;
use kerbside::mqtt::topics;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::enforce::limit_reached_at;
use crate::gcj02::to_gcj02;
use crate::map::{SimBay, SimRoad, StreetPlan};
use crate::truth::{Position, Truth};

/// Shares (0 to 1) of the faults the field produces.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Messages published a second time.
    pub duplicates: f64,
    /// Messages held back 10 s to 3 min (street time) and so overtaken.
    pub reorder: f64,
    /// Half-hour spells in which a handheld is offline, then uploads what
    /// it recorded as one array.
    pub offline_batches: f64,
    /// Sensors that fall silent partway through the window.
    pub stale_sensors: f64,
    /// Extra payloads the service cannot accept, per message sent.
    pub malformed: f64,
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Params {
    /// The window's end (now, for a live run); millisecond precision.
    pub end: DateTime<Utc>,
    /// Length of the window, hours.
    pub hours: f64,
    pub seed: u64,
    /// Local time zone: the arrival profile and enforced hours follow it.
    pub tz: Tz,
    pub faults: Faults,
    /// Share of drivers in a bay with a limit who mean to overstay it.
    pub overstayers: f64,
    /// Wardens on patrol, spread over the roads and both sides.
    pub wardens: usize,
    /// Minutes between a sensor's heartbeats.
    pub heartbeat_minutes: i64,
    /// Whether device ids end in the run's tag (`S-QF-N-001.{tag}`), so
    /// that a run registering its devices never meets an id that an
    /// earlier run registered (the service does not reuse ids).
    pub tagged_devices: bool,
}

impl Params {
    /// A window of `hours` ending at `end`, with the street's usual people.
    pub fn new(end: DateTime<Utc>, hours: f64, seed: u64) -> Params {
        Params {
            end: Utc
                .timestamp_millis_opt(end.timestamp_millis())
                .single()
                .unwrap_or(end),
            hours,
            seed,
            tz: chrono_tz::Asia::Shanghai,
            faults: Faults::default(),
            overstayers: 0.08,
            wardens: 12,
            heartbeat_minutes: 10,
            tagged_devices: false,
        }
    }
}

/// One MQTT publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Street time at which it is sent (never before what it reports).
    pub publish_at: DateTime<Utc>,
    pub topic: String,
    pub payload: Vec<u8>,
    /// Events in it as the service counts them.
    pub events: u64,
}

/// A device of the street: a bay's sensor or a warden's handheld.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub device_id: String,
    pub kind: DeviceKind,
    /// Who or what it is, for a person reading the service's device list.
    pub name: String,
}

/// A simulated window: what to send, and what was true.
#[derive(Debug, Clone)]
pub struct Plan {
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    /// Every device of the street, whether or not it sends anything; each
    /// message goes to the events topic of one of them.
    pub devices: Vec<Device>,
    /// In publishing order.
    pub messages: Vec<Message>,
    /// In time order; the run record is the caller's to add.
    pub truth: Vec<Truth>,
}

impl Plan {
    /// Events in all messages, as the service counts them.
    pub fn events(&self) -> u64 {
        self.messages.iter().map(|m| m.events).sum()
    }
}

/// Walking pace of a warden, metres per second.
const WALK_MPS: (f64, f64) = (1.1, 1.4);
/// Chance that a warden passing an occupied bay records the vehicle.
const OBSERVE_SHARE: f64 = 0.04;
/// Footway parking per road and hour.
const VANS_PER_HOUR: f64 = 1.2;
/// Goods piled on the footway, per road and hour.
const OBSTRUCTIONS_PER_HOUR: f64 = 0.4;
/// How far from the centre line a van on the footway stands, metres (the
/// bays end 9.5 m out on Qingfeng Road: well clear of the 3 m snap).
const VAN_OFFSET_M: f64 = 14.0;
const OBSTRUCTION_OFFSET_M: f64 = 13.0;
/// Offline spells are half-hour slots of a handheld's day.
const OFFLINE_SLOT_MS: i64 = 30 * 60_000;
/// Largest array a handheld uploads (the contract's limit).
const MAX_BATCH: usize = 500;

/// Arrivals per bay and hour when the bay is free, by local hour, on a
/// weekday: a shopping centre's street, busy at lunch and in the evening.
const WEEKDAY_PROFILE: [f64; 24] = [
    0.10, 0.06, 0.04, 0.04, 0.04, 0.10, 0.30, 0.70, 1.00, 1.10, 1.20, 1.50, 1.70, 1.40, 1.20, 1.20,
    1.40, 1.80, 2.40, 2.60, 2.40, 1.80, 1.00, 0.40,
];
/// Weekends are busier all day.
const WEEKEND_FACTOR: f64 = 1.35;

/// A deterministic random stream for one part of the street.
fn stream(seed: u64, part: u64, index: u64) -> StdRng {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    StdRng::seed_from_u64(mix(
        seed ^ mix(part.wrapping_mul(0x1_0000_0001) ^ mix(index))
    ))
}

fn instant(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn rfc3339(ms: i64) -> String {
    kerbside::clock::rfc3339(instant(ms))
}

fn uniform(rng: &mut StdRng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

fn exponential(rng: &mut StdRng, rate: f64) -> f64 {
    -(1.0 - rng.random::<f64>()).ln() / rate
}

fn normal(rng: &mut StdRng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A Jiaxing registration: 浙F and five letters or digits.
fn plate(rng: &mut StdRng) -> String {
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ0123456789";
    let tail: String = (0..5)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect();
    format!("浙F{tail}")
}

/// Arrivals per bay and hour at `ms`, local time.
fn arrival_rate(tz: Tz, ms: i64) -> f64 {
    let local = instant(ms).with_timezone(&tz);
    let h = local.hour() as usize;
    let frac = f64::from(local.minute()) / 60.0;
    let rate = WEEKDAY_PROFILE[h] * (1.0 - frac) + WEEKDAY_PROFILE[(h + 1) % 24] * frac;
    match local.weekday() {
        Weekday::Sat | Weekday::Sun => rate * WEEKEND_FACTOR,
        _ => rate,
    }
}

/// Median stay by bay kind, minutes.
fn median_stay(kind: &str) -> f64 {
    match kind {
        "loading" => 12.0,
        "accessible" => 60.0,
        "motorcycle" => 30.0,
        _ => 40.0,
    }
}

/// A vehicle's stay in a bay, street time in milliseconds.
#[derive(Debug, Clone)]
struct Car {
    arrive: i64,
    /// May lie past the window's end: it is still there.
    leave: i64,
    plate: String,
}

/// How long a driver stays, milliseconds.
fn stay_ms(rng: &mut StdRng, bay: &SimBay, overstayers: f64) -> i64 {
    let minutes = match bay.max_stay_minutes {
        Some(limit) if rng.random::<f64>() < overstayers => {
            f64::from(limit) * uniform(rng, 1.2, 3.0)
        }
        _ => median_stay(&bay.kind) * (0.75 * normal(rng)).exp(),
    };
    (minutes.clamp(2.0, 600.0) * 60_000.0) as i64
}

/// The vehicles that use `bay` during `[start, end)`. One already there
/// when the window opens is taken to arrive at its start (its sensor
/// reports it then).
fn cars_of(bay: &SimBay, index: u64, p: &Params, start: i64, end: i64) -> Vec<Car> {
    let mut rng = stream(p.seed, 1, index);
    let max_rate = WEEKDAY_PROFILE.iter().copied().fold(0.0, f64::max) * WEEKEND_FACTOR;
    let mut cars = Vec::new();
    let busy = arrival_rate(p.tz, start) * median_stay(&bay.kind) / 60.0;
    // Parks a car arriving at `arrive`; gives back when the bay is next free.
    let park = |rng: &mut StdRng, cars: &mut Vec<Car>, arrive: i64| {
        let leave = arrive + stay_ms(rng, bay, p.overstayers);
        cars.push(Car {
            arrive,
            leave,
            plate: plate(rng),
        });
        leave + 1_000
    };
    let mut t = start;
    if rng.random::<f64>() < busy / (1.0 + busy) {
        t = park(&mut rng, &mut cars, start);
    }
    while t < end {
        // Thinning: candidate arrivals at the peak rate, kept in proportion.
        t += (exponential(&mut rng, max_rate) * 3_600_000.0) as i64 + 1_000;
        if t >= end {
            break;
        }
        if rng.random::<f64>() * max_rate > arrival_rate(p.tz, t) {
            continue;
        }
        t = park(&mut rng, &mut cars, t);
    }
    cars
}

/// A warden walking one side of a road, end to end and back.
#[derive(Debug, Clone)]
struct Warden {
    road: usize,
    side: f64,
    /// Metres per second.
    speed: f64,
    /// Position on the out-and-back loop at the window's start, metres.
    phase: f64,
    device_id: String,
    /// An Amap-based handheld: it reports positions in GCJ-02.
    gcj02: bool,
}

impl Warden {
    /// When the warden passes `along_m` during `[from, to)`, in order.
    fn passes(&self, road: &SimRoad, along_m: f64, start: i64, from: i64, to: i64) -> Vec<i64> {
        let lap = 2.0 * road.length_m;
        let mut out = Vec::new();
        for target in [along_m, lap - along_m] {
            let walked_at_from = (from - start) as f64 / 1000.0 * self.speed;
            let k0 = ((walked_at_from - (target - self.phase)) / lap).ceil();
            let mut k = k0;
            loop {
                let secs = (target - self.phase + lap * k) / self.speed;
                let t = start + (secs * 1000.0) as i64;
                if t >= to {
                    break;
                }
                if t >= from {
                    out.push(t);
                }
                k += 1.0;
            }
        }
        out.sort_unstable();
        out
    }
}

/// A device's events before ids are given: (street time, body).
type Pending = Vec<(i64, Value)>;

/// Gives each event its id (in time order) and time. Ids carry the run's
/// tag, so a second run against the same service is new events, not
/// duplicates of the first.
fn finish(run: &str, device_prefix: &str, mut events: Pending) -> Vec<(i64, Value)> {
    events.sort_by_key(|(t, _)| *t);
    for (n, (t, body)) in events.iter_mut().enumerate() {
        body["event_id"] = json!(format!("{run}-{device_prefix}{:06}", n + 1));
        body["observed_at"] = json!(rfc3339(*t));
    }
    events
}

fn single(device_id: &str, at: i64, body: &Value) -> Message {
    Message {
        publish_at: instant(at),
        topic: topics::events(device_id),
        payload: body.to_string().into_bytes(),
        events: 1,
    }
}

/// A device id: `base`, then `.` and the run's tag when devices are
/// tagged.
fn device_id(base: String, tag: Option<&str>) -> String {
    match tag {
        Some(tag) => format!("{base}.{tag}"),
        None => base,
    }
}

/// A sensor's device id: `S-` and its bay's id, or its index when that
/// would be too long for an identifier.
fn sensor_id(bay: &SimBay, index: usize, tag: Option<&str>) -> String {
    let id = device_id(format!("S-{}", bay.bay_id), tag);
    if id.len() <= 64 {
        id
    } else {
        device_id(format!("S-{index}"), tag)
    }
}

/// Simulates `street` over the window of `p`.
pub fn simulate(street: &StreetPlan, p: &Params) -> Plan {
    let end = p.end.timestamp_millis();
    let start = end - (p.hours * 3_600_000.0) as i64;
    let mut truth = Vec::new();
    let mut messages = Vec::new();
    let run = format!("{end:x}s{}", p.seed);
    let tag = p.tagged_devices.then_some(run.as_str());
    let mut devices = Vec::new();

    // Drivers and sensors, bay by bay.
    let bays: Vec<(usize, &SimBay)> = street
        .roads
        .iter()
        .enumerate()
        .flat_map(|(r, road)| road.bays.iter().map(move |b| (r, b)))
        .collect();
    let mut cars_by_bay = Vec::with_capacity(bays.len());
    for (i, (_, bay)) in bays.iter().enumerate() {
        let cars = cars_of(bay, i as u64, p, start, end);
        bay_truth(bay, &cars, p, start, end, &mut truth);
        let device = sensor_id(bay, i, tag);
        devices.push(Device {
            device_id: device.clone(),
            kind: DeviceKind::Sensor,
            name: format!("sensor of bay {}", bay.bay_id),
        });
        let mut rng = stream(p.seed, 5, i as u64);
        let silent_at = (rng.random::<f64>() < p.faults.stale_sensors)
            .then(|| start + ((end - start) as f64 * uniform(&mut rng, 0.2, 0.8)) as i64);
        let mut events: Pending = Vec::new();
        let occupied_at_start = cars.first().is_some_and(|c| c.arrive == start);
        let boot = if occupied_at_start {
            "occupied"
        } else {
            "vacated"
        };
        events.push((start, json!({"type": boot, "bay_id": bay.bay_id})));
        for c in &cars {
            if c.arrive > start {
                events.push((c.arrive, json!({"type": "occupied", "bay_id": bay.bay_id})));
            }
            if c.leave < end {
                events.push((c.leave, json!({"type": "vacated", "bay_id": bay.bay_id})));
            }
        }
        let every = p.heartbeat_minutes.max(1) * 60_000;
        let mut t = start + rng.random_range(0..every);
        while t < end {
            events.push((t, json!({"type": "heartbeat", "bay_id": bay.bay_id})));
            t += every;
        }
        if let Some(at) = silent_at {
            events.retain(|(t, _)| *t < at);
            truth.push(Truth::SensorSilent {
                at: instant(at),
                bay_id: bay.bay_id.clone(),
                device_id: device.clone(),
            });
        }
        for (t, body) in finish(&run, "e", events) {
            messages.push(single(&device, t, &body));
        }
        cars_by_bay.push(cars);
    }

    // Wardens: chalking bays, reporting the footway.
    let wardens: Vec<Warden> = (0..if street.roads.is_empty() {
        0
    } else {
        p.wardens
    })
        .map(|w| {
            let road = w % street.roads.len();
            let mut rng = stream(p.seed, 2, w as u64);
            Warden {
                road,
                side: if (w / street.roads.len()).is_multiple_of(2) {
                    1.0
                } else {
                    -1.0
                },
                speed: uniform(&mut rng, WALK_MPS.0, WALK_MPS.1),
                phase: uniform(&mut rng, 0.0, 2.0 * street.roads[road].length_m),
                device_id: device_id(format!("H-{:02}", w + 1), tag),
                gcj02: w % 3 == 0,
            }
        })
        .collect();
    devices.extend(wardens.iter().enumerate().map(|(w, warden)| Device {
        device_id: warden.device_id.clone(),
        kind: DeviceKind::Handheld,
        name: format!("warden's handheld {:02}", w + 1),
    }));
    let mut handheld: Vec<Pending> = vec![Vec::new(); wardens.len()];
    for (w, warden) in wardens.iter().enumerate() {
        let mut rng = stream(p.seed, 2, (w + wardens.len()) as u64);
        let road = &street.roads[warden.road];
        for (i, (r, bay)) in bays.iter().enumerate() {
            if *r != warden.road || bay.side != warden.side {
                continue;
            }
            let cars = &cars_by_bay[i];
            for t in warden.passes(road, bay.along_m, start, start, end) {
                let Some(car) = cars
                    .iter()
                    .find(|c| c.arrive + 1_000 < t && t + 1_000 < c.leave)
                else {
                    continue;
                };
                if rng.random::<f64>() >= OBSERVE_SHARE {
                    continue;
                }
                let mut body = json!({"type": "observed", "plate": car.plate});
                if warden.gcj02 {
                    // Where the handheld's map put it: the bay's middle, give
                    // or take 30 cm, in Amap's datum.
                    let (lon, lat) = bay.centroid;
                    let lon = lon + uniform(&mut rng, -0.3, 0.3) / 95_000.0;
                    let lat = lat + uniform(&mut rng, -0.3, 0.3) / 111_000.0;
                    let (glon, glat) = to_gcj02(lon, lat);
                    body["position"] = json!({"lon": glon, "lat": glat});
                    body["crs"] = json!("gcj02");
                } else {
                    body["bay_id"] = json!(bay.bay_id);
                }
                handheld[w].push((t, body));
            }
        }
    }
    for (r, road) in street.roads.iter().enumerate() {
        footway(road, r, &wardens, &mut handheld, p, start, end, &mut truth);
    }

    // Handhelds upload as they go, or after an offline spell.
    for (w, (warden, events)) in wardens.iter().zip(handheld).enumerate() {
        let mut rng = stream(p.seed, 6, w as u64);
        let events = finish(&run, "h", events);
        let slots = ((end - start) / OFFLINE_SLOT_MS + 1) as usize;
        let offline: Vec<bool> = (0..slots)
            .map(|_| rng.random::<f64>() < p.faults.offline_batches)
            .collect();
        let mut held: Vec<Vec<Value>> = vec![Vec::new(); slots];
        for (t, body) in events {
            let slot = ((t - start) / OFFLINE_SLOT_MS) as usize;
            if offline[slot] {
                held[slot].push(body);
            } else {
                messages.push(single(&warden.device_id, t, &body));
            }
        }
        for (slot, batch) in held.into_iter().enumerate() {
            let back = start + (slot as i64 + 1) * OFFLINE_SLOT_MS + rng.random_range(0..300_000);
            for chunk in batch.chunks(MAX_BATCH) {
                messages.push(Message {
                    publish_at: instant(back.min(end)),
                    topic: topics::events(&warden.device_id),
                    payload: Value::Array(chunk.to_vec()).to_string().into_bytes(),
                    events: chunk.len() as u64,
                });
            }
        }
    }

    let sensors = &devices[..bays.len()];
    faults(&mut messages, &bays, sensors, p, start, end);
    messages.sort_by_key(|m| m.publish_at);
    truth.sort_by_key(Truth::at);
    Plan {
        started_at: instant(start),
        ended_at: instant(end),
        devices,
        messages,
        truth,
    }
}

/// The truth of one bay: its status changes and its overstays.
fn bay_truth(bay: &SimBay, cars: &[Car], p: &Params, start: i64, end: i64, out: &mut Vec<Truth>) {
    let status = |at: i64, s: &str| Truth::BayStatus {
        at: instant(at),
        bay_id: bay.bay_id.clone(),
        status: s.into(),
    };
    if cars.first().is_none_or(|c| c.arrive > start) {
        out.push(status(start, "free"));
    }
    for c in cars {
        out.push(status(c.arrive, "occupied"));
        if c.leave < end {
            out.push(status(c.leave, "free"));
        }
        let Some(limit) = bay.max_stay_minutes else {
            continue;
        };
        let Some(reached) = limit_reached_at(
            instant(c.arrive),
            Duration::minutes(i64::from(limit)),
            bay.enforced_hours,
            p.tz,
        ) else {
            continue;
        };
        let reached_ms = reached.timestamp_millis();
        if reached_ms <= c.leave && reached_ms <= end {
            out.push(Truth::Overstay {
                bay_id: bay.bay_id.clone(),
                plate: c.plate.clone(),
                arrived_at: instant(c.arrive),
                limit_reached_at: reached,
                left_at: (c.leave < end).then(|| instant(c.leave)),
            });
        }
    }
}

/// Vans parked on a road's footway and goods piled on it, and the first
/// warden on that side to pass each one.
#[allow(clippy::too_many_arguments)]
fn footway(
    road: &SimRoad,
    r: usize,
    wardens: &[Warden],
    handheld: &mut [Pending],
    p: &Params,
    start: i64,
    end: i64,
    truth: &mut Vec<Truth>,
) {
    let mut rng = stream(p.seed, 3, r as u64);
    for (category, rate, offset) in [
        ("van", VANS_PER_HOUR, VAN_OFFSET_M),
        ("obstruction", OBSTRUCTIONS_PER_HOUR, OBSTRUCTION_OFFSET_M),
    ] {
        let mut t = start;
        loop {
            t += (exponential(&mut rng, rate) * 3_600_000.0) as i64;
            if t >= end {
                break;
            }
            let stay = (uniform(&mut rng, 5.0, 60.0) * 60_000.0) as i64;
            let along = uniform(&mut rng, 15.0, (road.length_m - 15.0).max(15.0));
            let side = if rng.random::<bool>() { 1.0 } else { -1.0 };
            let (lon, lat) = road.point_beside(along, side, offset);
            let position = Position { lon, lat };
            let van_plate = plate(&mut rng);
            truth.push(if category == "van" {
                Truth::OutsideBay {
                    at: instant(t),
                    plate: van_plate.clone(),
                    position,
                }
            } else {
                Truth::Report {
                    at: instant(t),
                    category: "obstruction".into(),
                    position,
                }
            });
            let seen = wardens
                .iter()
                .enumerate()
                .filter(|(_, w)| w.road == r && w.side == side)
                .filter_map(|(i, w)| {
                    w.passes(road, along, start, t + 1_000, (t + stay).min(end))
                        .first()
                        .map(|at| (*at, i))
                })
                .min();
            let Some((at, w)) = seen else { continue };
            let mut body = if category == "van" {
                json!({"type": "observed", "plate": van_plate, "note": "van on the footway"})
            } else {
                json!({"type": "report", "category": "obstruction", "note": "goods piled on the footway"})
            };
            if wardens[w].gcj02 {
                let (glon, glat) = to_gcj02(lon, lat);
                body["position"] = json!({"lon": glon, "lat": glat});
                body["crs"] = json!("gcj02");
            } else {
                body["position"] = json!({"lon": lon, "lat": lat});
            }
            handheld[w].push((at, body));
        }
    }
}

/// Duplicates, reordering and malformed payloads, as the field makes them;
/// `sensors` are the bays' devices, in the order of `bays`.
fn faults(
    messages: &mut Vec<Message>,
    bays: &[(usize, &SimBay)],
    sensors: &[Device],
    p: &Params,
    start: i64,
    end: i64,
) {
    let mut rng = stream(p.seed, 7, 0);
    let f = p.faults;
    let mut copies = Vec::new();
    for m in messages.iter_mut() {
        let at = m.publish_at.timestamp_millis();
        if rng.random::<f64>() < f.reorder {
            let later = at + rng.random_range(10_000..180_000);
            m.publish_at = instant(later.min(end));
        }
        if rng.random::<f64>() < f.duplicates {
            let mut copy = m.clone();
            let again = m.publish_at.timestamp_millis() + rng.random_range(0..60_000);
            copy.publish_at = instant(again.min(end));
            copies.push(copy);
        }
    }
    let bad = (f.malformed * messages.len() as f64).round() as usize;
    messages.extend(copies);
    if bays.is_empty() {
        return;
    }
    for n in 0..bad {
        let i = rng.random_range(0..bays.len());
        let (_, bay) = bays[i];
        let device = &sensors[i].device_id;
        let at = rng.random_range(start..end.max(start + 1));
        let payload: Vec<u8> = match n % 5 {
            0 => b"occupied bay 7".to_vec(),
            1 => vec![0xff, 0xfe, 0x00, 0x7b],
            2 => format!("{{\"event_id\": \"bad-{n}\", \"type\": \"occupied\"").into_bytes(),
            3 => json!({"event_id": format!("bad-{n}"), "type": "teleported",
                        "observed_at": rfc3339(at), "bay_id": bay.bay_id})
            .to_string()
            .into_bytes(),
            _ => json!({"event_id": format!("bad-{n}"), "type": "occupied",
                        "observed_at": "yesterday", "bay_id": bay.bay_id})
            .to_string()
            .into_bytes(),
        };
        messages.push(Message {
            publish_at: instant(at),
            topic: topics::events(device),
            payload,
            events: 1,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn street() -> StreetPlan {
        StreetPlan::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../geodata")).unwrap()
    }

    fn saturday_evening() -> DateTime<Utc> {
        // 20:00 in Jiaxing.
        Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
    }

    fn faulty(seed: u64) -> Params {
        let mut p = Params::new(saturday_evening(), 6.0, seed);
        p.faults = Faults {
            duplicates: 0.05,
            reorder: 0.05,
            offline_batches: 0.1,
            stale_sensors: 0.05,
            malformed: 0.01,
        };
        p
    }

    #[test]
    fn a_seed_gives_the_same_street_every_time() {
        let s = street();
        let a = simulate(&s, &faulty(7));
        let b = simulate(&s, &faulty(7));
        assert_eq!(a.messages, b.messages);
        assert_eq!(a.truth, b.truth);
        let c = simulate(&s, &faulty(8));
        assert_ne!(a.truth, c.truth, "another seed, another street");
    }

    #[test]
    fn nothing_is_observed_after_the_window_or_sent_before_it_happened() {
        let s = street();
        let p = faulty(3);
        let plan = simulate(&s, &p);
        assert!(plan.messages.len() > 5_000, "{}", plan.messages.len());
        for m in &plan.messages {
            assert!(m.publish_at <= p.end);
            let Ok(v) = serde_json::from_slice::<Value>(&m.payload) else {
                continue;
            };
            let items = match &v {
                Value::Array(a) => a.clone(),
                one => vec![one.clone()],
            };
            for e in items {
                let Some(at) = e["observed_at"].as_str() else {
                    continue;
                };
                let Ok(at) = DateTime::parse_from_rfc3339(at) else {
                    continue;
                };
                assert!(at <= p.end, "{e} lies in the future");
                assert!(at <= m.publish_at, "{e} sent before it happened");
            }
        }
    }

    #[test]
    fn the_street_has_everything_a_warden_meets() {
        let s = street();
        let plan = simulate(&s, &faulty(1));
        let count = |ty: &str| {
            plan.truth
                .iter()
                .filter(|t| serde_json::to_value(t).unwrap()["type"] == ty)
                .count()
        };
        assert!(count("bay_status") > 500, "{}", count("bay_status"));
        assert!(count("overstay") >= 5, "{}", count("overstay"));
        assert!(count("outside_bay") >= 2, "{}", count("outside_bay"));
        assert!(count("sensor_silent") >= 1, "{}", count("sensor_silent"));
        let text = |m: &Message| String::from_utf8_lossy(&m.payload).into_owned();
        assert!(plan.messages.iter().any(|m| text(m).contains("gcj02")));
        assert!(plan.messages.iter().any(|m| text(m).starts_with('[')));
        assert!(
            plan.messages
                .iter()
                .any(|m| text(m).contains("\"observed\""))
        );
    }

    #[test]
    fn every_message_goes_to_a_device_of_the_plan() {
        let s = street();
        for tagged in [false, true] {
            let mut p = faulty(5);
            p.tagged_devices = tagged;
            let plan = simulate(&s, &p);
            assert_eq!(plan.devices.len(), s.bays().count() + p.wardens);
            let ids: std::collections::HashSet<&str> =
                plan.devices.iter().map(|d| d.device_id.as_str()).collect();
            assert_eq!(ids.len(), plan.devices.len(), "ids are distinct");
            for id in &ids {
                kerbside::domain::ids::DeviceId::parse(id).unwrap();
                assert_eq!(id.contains('.'), tagged, "{id}");
            }
            for m in &plan.messages {
                let device = topics::device_of_events_topic(&m.topic).unwrap();
                assert!(ids.contains(device), "{} is no device of the plan", m.topic);
            }
        }
        let plain = simulate(&s, &faulty(5));
        assert!(plain.devices.iter().any(|d| d.device_id == "S-QF-N-001"));
        assert!(plain.devices.iter().any(|d| d.device_id == "H-01"));
    }

    #[test]
    fn tagging_devices_changes_nothing_but_their_ids() {
        let s = street();
        let plain = simulate(&s, &faulty(9));
        let mut p = faulty(9);
        p.tagged_devices = true;
        let tagged = simulate(&s, &p);
        assert_eq!(plain.messages.len(), tagged.messages.len());
        for (a, b) in plain.messages.iter().zip(&tagged.messages) {
            assert_eq!((a.publish_at, &a.payload), (b.publish_at, &b.payload));
        }
        let bays = |plan: &Plan| {
            plan.truth
                .iter()
                .filter(|t| !matches!(t, Truth::SensorSilent { .. }))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(bays(&plain), bays(&tagged));
    }

    #[test]
    fn truth_overstays_follow_the_enforcement_clock() {
        let s = street();
        let p = Params::new(saturday_evening(), 6.0, 2);
        let plan = simulate(&s, &p);
        for t in &plan.truth {
            if let Truth::Overstay {
                bay_id,
                arrived_at,
                limit_reached_at,
                left_at,
                ..
            } = t
            {
                let bay = s.bays().find(|b| &b.bay_id == bay_id).unwrap();
                let limit = Duration::minutes(i64::from(bay.max_stay_minutes.unwrap()));
                let used = kerbside::domain::enforcement::enforced_between(
                    *arrived_at,
                    *limit_reached_at,
                    bay.enforced_hours,
                    p.tz,
                );
                assert_eq!(used, limit);
                assert!(left_at.is_none_or(|l| l >= *limit_reached_at));
                assert!(*limit_reached_at <= p.end);
            }
        }
    }
}
