//! Ingest stays bounded under load and abuse: a poison message is set
//! aside and ingest goes on; acknowledgements belong to their connection;
//! a stranger's heartbeats cost nothing lasting.

use std::time::Duration;

use kerbside::domain::auth::Role;
use serde_json::json;

use crate::helpers::{acking_client, at, spawn_app, wait_until};
use crate::testdb::{WriteLock, is_postgres_url, query};

fn occupied(event_id: &str, bay: &str) -> serde_json::Value {
    json!({"event_id": event_id, "type": "occupied", "observed_at": at(-1), "bay_id": bay})
}

#[test]
fn a_poison_message_is_quarantined_acknowledged_and_ingest_goes_on() {
    let app = spawn_app();
    app.wait_for_broker();
    // The store fails, every time, on this one event.
    let poison = if is_postgres_url(&app.database_url) {
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF NEW.event_id = 'poison' THEN RAISE EXCEPTION 'poisoned event'; END IF; \
         RETURN NEW; END $$; \
         CREATE TRIGGER poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION poison();"
    } else {
        "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.event_id = 'poison' \
         BEGIN SELECT RAISE(ABORT, 'poisoned event'); END;"
    };
    query(&app.database_url, poison);
    let (client, acks) = acking_client("127.0.0.1", app.broker.1);
    let publish = |device: &str, body: serde_json::Value| {
        client
            .publish(
                format!("kerbside/v1/devices/{device}/events"),
                rumqttc::QoS::AtLeastOnce,
                false,
                body.to_string(),
            )
            .unwrap();
    };
    publish("s-poison", occupied("poison", "QF-S-014"));
    publish("s-good", occupied("good-1", "QF-S-015"));
    for n in 0..2 {
        acks.recv_timeout(Duration::from_secs(15))
            .unwrap_or_else(|_| panic!("message {n} was never acknowledged"));
    }
    wait_until("the good event to be stored", || {
        app.bay_status("QF-S-015") == "occupied"
    });
    assert_eq!(app.bay_status("QF-S-014"), "unknown");
    assert_eq!(app.metric("kerbside_quarantined_total"), 1.0);

    let admin = app.token(Role::Admin);
    let list = app.get_as("/v1/quarantine", &admin);
    assert_eq!(list.status, 200, "{}", list.body);
    let list = list.json();
    let q = &list["quarantined"];
    assert_eq!(q.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(q[0]["device_id"], "s-poison");
    assert_eq!(q[0]["topic"], "kerbside/v1/devices/s-poison/events");
    assert!(
        q[0]["payload"].as_str().unwrap().contains("\"poison\""),
        "{list}"
    );
    assert!(
        q[0]["error"].as_str().unwrap().contains("poisoned event"),
        "{list}"
    );

    // Ingest goes on after it.
    publish("s-good", occupied("good-2", "QF-S-016"));
    wait_until("a later event to be stored", || {
        app.bay_status("QF-S-016") == "occupied"
    });

    // Admins only; errors are problems.
    app.get("/v1/quarantine").problem(401);
    let warden = app.token(Role::Warden);
    app.get_as("/v1/quarantine", &warden).problem(403);
    app.get_as("/v1/quarantine?limit=0", &admin).problem(400);
}

#[test]
fn a_qos0_flood_is_held_back_at_the_broker_not_in_memory() {
    const FLOOD: usize = 15_000;
    let app = spawn_app();
    app.wait_for_broker();
    let watcher = app.mqtt("flood-watch");
    watcher.subscribe("kerbside/v1/devices/+/events");
    let lock = WriteLock::take(&app.database_url);

    let options = rumqttc::MqttOptions::new("flood", "127.0.0.1", app.broker.1);
    let (client, mut connection) = rumqttc::Client::new(options, 1000);
    std::thread::spawn(move || for _ in connection.iter() {});
    let t0 = crate::helpers::default_now() - chrono::Duration::minutes(2);
    for i in 0..=FLOOD {
        let body = json!({"event_id": format!("f-{i}"), "type": "heartbeat", "bay_id": "QF-S-014",
            "observed_at": (t0 + chrono::Duration::milliseconds(i as i64)).to_rfc3339()});
        client
            .publish(
                "kerbside/v1/devices/s-flood/events",
                rumqttc::QoS::AtMostOnce,
                false,
                body.to_string(),
            )
            .unwrap();
    }
    let queued = || app.metric("kerbside_ingest_queue_messages");
    let mut largest: f64 = 0.0;
    // Everything has passed the broker once another subscriber has the last.
    let last = format!("f-{FLOOD}");
    loop {
        largest = largest.max(queued());
        let seen = watcher.drain(Duration::from_millis(50));
        if seen.iter().any(|p| {
            serde_json::from_slice::<serde_json::Value>(&p.payload).unwrap()["event_id"] == last
        }) {
            break;
        }
    }
    wait_until("kerbside to have read what its budget allows", || {
        largest = largest.max(queued());
        largest >= kerbside::mqtt::QUEUE_MESSAGES as f64
    });
    lock.release();
    wait_until("every event of the flood to be stored", || {
        largest = largest.max(queued());
        app.metric("kerbside_events_accepted_total") == (FLOOD + 1) as f64
    });
    assert!(
        largest <= kerbside::mqtt::QUEUE_MESSAGES as f64,
        "ingest held {largest} messages at once"
    );
    wait_until("the queue to empty", || queued() == 0.0);
}

/// A broker of the test's own, one connection at a time, to script what
/// kerbside sees: which session it gets and which packet ids.
struct ScriptedBroker {
    listener: std::net::TcpListener,
}

struct ScriptedConnection {
    stream: std::net::TcpStream,
    buf: bytes::BytesMut,
}

impl ScriptedBroker {
    fn start() -> ScriptedBroker {
        ScriptedBroker {
            listener: std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        }
    }

    fn url(&self) -> String {
        format!("mqtt://{}", self.listener.local_addr().unwrap())
    }

    /// Takes kerbside's next connection: a fresh session (none present),
    /// its subscription granted.
    fn accept_fresh_session(&self) -> ScriptedConnection {
        let (stream, _) = self.listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut c = ScriptedConnection {
            stream,
            buf: bytes::BytesMut::new(),
        };
        assert!(matches!(c.next(), rumqttc::Packet::Connect(_)));
        c.send(rumqttc::Packet::ConnAck(rumqttc::ConnAck::new(
            rumqttc::ConnectReturnCode::Success,
            false,
        )));
        // What kerbside had queued to publish may come before its subscription.
        let sub = loop {
            match c.next() {
                rumqttc::Packet::Subscribe(sub) => break sub,
                rumqttc::Packet::Publish(p) => {
                    c.send(rumqttc::Packet::PubAck(rumqttc::PubAck::new(p.pkid)))
                }
                other => panic!("kerbside sent {other:?} before subscribing"),
            }
        };
        c.send(rumqttc::Packet::SubAck(rumqttc::SubAck::new(
            sub.pkid,
            vec![rumqttc::SubscribeReasonCode::Success(
                rumqttc::QoS::AtLeastOnce,
            )],
        )));
        c
    }
}

impl ScriptedConnection {
    fn send(&mut self, p: rumqttc::Packet) {
        use std::io::Write;
        let mut out = bytes::BytesMut::new();
        p.write(&mut out, 1 << 20).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    /// The next packet from kerbside; its pings are answered on the way.
    fn next(&mut self) -> rumqttc::Packet {
        use std::io::Read;
        loop {
            match rumqttc::Packet::read(&mut self.buf, 1 << 20) {
                Ok(rumqttc::Packet::PingReq) => self.send(rumqttc::Packet::PingResp),
                Ok(p) => return p,
                Err(rumqttc::Error::InsufficientBytes(_)) => {
                    let mut chunk = [0u8; 4096];
                    let n = self.stream.read(&mut chunk).expect("kerbside to send");
                    assert!(n > 0, "kerbside closed the connection");
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                Err(e) => panic!("bad packet from kerbside: {e:?}"),
            }
        }
    }

    /// Delivers an event to kerbside at QoS 1 with packet id `pkid`.
    fn deliver(&mut self, pkid: u16, event: serde_json::Value) {
        let mut p = rumqttc::Publish::new(
            "kerbside/v1/devices/s-conn/events",
            rumqttc::QoS::AtLeastOnce,
            event.to_string(),
        );
        p.pkid = pkid;
        self.send(rumqttc::Packet::Publish(p));
    }

    /// The packet ids kerbside acknowledges, up to and including `last`;
    /// its own publishes are acknowledged on the way.
    fn acks_until(&mut self, last: u16) -> Vec<u16> {
        let mut acks = Vec::new();
        loop {
            match self.next() {
                rumqttc::Packet::PubAck(a) => {
                    acks.push(a.pkid);
                    if a.pkid == last {
                        return acks;
                    }
                }
                rumqttc::Packet::Publish(p) => {
                    self.send(rumqttc::Packet::PubAck(rumqttc::PubAck::new(p.pkid)))
                }
                _ => {}
            }
        }
    }
}

#[test]
fn an_acknowledgement_never_crosses_to_a_new_connection() {
    let broker = ScriptedBroker::start();
    let url = broker.url();
    let app = crate::helpers::spawn_app_with(move |s| {
        s.mqtt_url = Some(url);
        s.mqtt_client_id = "kerbside-conn".into();
    });
    let mut first = broker.accept_fresh_session();
    let queued = || app.metric("kerbside_ingest_queue_messages");

    // A message arrives as packet 1 and waits for a stalled store...
    let lock = WriteLock::take(&app.database_url);
    first.deliver(1, occupied("a", "QF-S-014"));
    wait_until("kerbside to hold the first message", || queued() == 1.0);
    // ...when the connection drops and the broker has lost the session:
    // on the new connection, packet id 1 is another message.
    first.stream.shutdown(std::net::Shutdown::Both).unwrap();
    let mut second = broker.accept_fresh_session();
    second.deliver(1, occupied("b", "QF-S-015"));
    wait_until("kerbside to hold both messages", || queued() == 2.0);
    lock.release();
    second.deliver(2, occupied("c", "QF-S-016"));

    // One acknowledgement for each message of this connection, none for
    // the first connection's: packet 1 is acknowledged once, for "b".
    assert_eq!(second.acks_until(2), vec![1, 2]);
    for bay in ["QF-S-014", "QF-S-015", "QF-S-016"] {
        wait_until("every message to be stored", || {
            app.bay_status(bay) == "occupied"
        });
    }
}

#[test]
fn made_up_devices_sending_bare_heartbeats_cannot_grow_the_device_table_without_end() {
    let cap = kerbside::store::OPEN_DEVICES_CAP as usize;
    // The suite runs on `--devices open`, where any device id is taken.
    let app = spawn_app();
    app.wait_for_broker();
    let options = rumqttc::MqttOptions::new("strangers", "127.0.0.1", app.broker.1);
    let (client, mut connection) = rumqttc::Client::new(options, 1000);
    std::thread::spawn(move || for _ in connection.iter() {});
    let heartbeat = |device: &str, event_id: &str| {
        let body = json!({"event_id": event_id, "type": "heartbeat", "observed_at": at(-1)});
        client
            .publish(
                format!("kerbside/v1/devices/{device}/events"),
                rumqttc::QoS::AtMostOnce,
                false,
                body.to_string(),
            )
            .unwrap();
    };
    for i in 0..cap {
        heartbeat(&format!("stranger-{i}"), "hb-1");
    }
    // Ten thousand new devices, each a row: a minute allows for a loaded
    // machine on either backend.
    crate::helpers::wait_until_within("the first strangers' heartbeats to be stored", 60, || {
        app.metric("kerbside_events_accepted_total") == cap as f64
    });
    assert_eq!(app.store.device_count().unwrap(), cap as i64);

    // One more stranger is refused; a device already known is not.
    heartbeat("stranger-one-too-many", "hb-1");
    heartbeat("stranger-0", "hb-2");
    wait_until("the newcomer to be refused", || {
        app.metric("kerbside_events_rejected_total") == 1.0
    });
    wait_until("the known device's heartbeat to be stored", || {
        app.metric("kerbside_events_accepted_total") == (cap + 1) as f64
    });
    assert_eq!(app.store.device_count().unwrap(), cap as i64);
    let text = app.get("/metrics").body;
    assert!(
        text.contains("kerbside_events_rejected_by_reason_total{reason=\"unknown_device\"} 1"),
        "{text}"
    );
}

#[test]
fn an_overlong_device_segment_is_stored_cut_and_told_to_nobody() {
    let app = spawn_app();
    app.wait_for_broker();
    let watcher = app.mqtt("rejection-watch");
    watcher.subscribe("kerbside/v1/devices/+/rejections");
    let sender = app.mqtt("long-sender");
    let long = "x".repeat(5_000);
    sender.send_events(&long, &occupied("long-1", "QF-S-014"));
    wait_until("the long-named message to be rejected", || {
        app.metric("kerbside_events_rejected_total") == 1.0
    });
    // A short-named device's rejection comes after it, and is told.
    sender.send_events("s-short", &occupied("short-1", "QF-S-999"));
    // Rejections are told in order: whatever went to the long name would
    // arrive before the short one's.
    let mut told = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !told
        .iter()
        .any(|p: &rumqttc::Publish| p.topic == "kerbside/v1/devices/s-short/rejections")
    {
        assert!(std::time::Instant::now() < deadline, "no rejection told");
        told.extend(watcher.drain(Duration::from_millis(50)));
    }
    let told: Vec<serde_json::Value> = told
        .iter()
        .map(|p| {
            assert!(
                p.topic.len() < 200,
                "a rejection went to a {}-byte topic",
                p.topic.len()
            );
            serde_json::from_slice(&p.payload).unwrap()
        })
        .collect();
    assert!(told.iter().all(|r| r["event_id"] != "long-1"), "{told:?}");

    let rows = query(
        &app.database_url,
        "SELECT length(device_id), length(detail) FROM rejections ORDER BY seq LIMIT 1",
    );
    let (device_len, detail_len) = rows[0].split_once('|').unwrap();
    let (device_len, detail_len): (usize, usize) =
        (device_len.parse().unwrap(), detail_len.parse().unwrap());
    assert!(
        device_len <= 65,
        "stored a {device_len}-character device segment"
    );
    assert!(detail_len < 300, "stored a {detail_len}-character detail");
}

#[test]
fn a_backlog_of_late_events_is_replayed_a_few_dozen_bays_per_transaction() {
    let app = spawn_app();
    app.wait_for_broker();
    let bays: Vec<String> = app.get("/v1/roads/qingfeng-road/bays").json()["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(bays.len() > 2 * kerbside::ingest::MAX_REPLAYS_PER_BATCH);
    let sensor = app.mqtt("late-sensor");
    // Every bay occupied ten minutes ago...
    let occupied: Vec<serde_json::Value> = bays
        .iter()
        .map(|b| json!({"event_id": format!("o-{b}"), "type": "occupied", "observed_at": at(-10), "bay_id": b}))
        .collect();
    sensor.send_events("s-late", &json!(occupied));
    wait_until("every bay to be occupied", || {
        app.metric("kerbside_events_accepted_total") == bays.len() as f64
    });
    let batches = app.metric("kerbside_ingest_batches_total");

    // ...then, while the store stalls, each bay's vacancy of twenty minutes
    // ago arrives late, one message a bay.
    let lock = WriteLock::take(&app.database_url);
    // At QoS 0, so that no in-flight window holds them back.
    let options = rumqttc::MqttOptions::new("late-backlog", "127.0.0.1", app.broker.1);
    let (client, mut connection) = rumqttc::Client::new(options, 1000);
    std::thread::spawn(move || for _ in connection.iter() {});
    for b in &bays {
        let body = json!({"event_id": format!("v-{b}"), "type": "vacated", "observed_at": at(-20), "bay_id": b});
        client
            .publish(
                "kerbside/v1/devices/s-late/events",
                rumqttc::QoS::AtMostOnce,
                false,
                body.to_string(),
            )
            .unwrap();
    }
    wait_until("kerbside to hold every late message", || {
        app.metric("kerbside_ingest_queue_messages") == bays.len() as f64
    });
    lock.release();
    wait_until("every late event to be stored", || {
        app.metric("kerbside_events_accepted_total") == 2.0 * bays.len() as f64
    });

    let text = app.get("/metrics").body;
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    assert_eq!(
        value("kerbside_ingest_replayed_bays_sum"),
        bays.len() as f64
    );
    assert_eq!(
        value("kerbside_ingest_replayed_bays_bucket{le=\"64\"}"),
        value("kerbside_ingest_replayed_bays_count"),
        "a transaction replayed more than 64 bays:\n{text}"
    );
    assert!(app.metric("kerbside_ingest_batches_total") - batches >= 3.0);
}
