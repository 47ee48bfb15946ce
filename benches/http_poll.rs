//! Parsing and routing one poll request, without sockets (issue goal: the
//! poll's server CPU within 1.25x of the floor's; this is the user-space
//! part above the floor's one read and one write).
//!
//! `poll/parse+route+write`: the exact request the load harness sends
//! (`GET /api/v4/events?hash=<10th newest>` with the `token` header) parsed by
//! httparse, routed, the 10 newest of 1,000 retained events read by hash, and
//! the whole 200 response written into a reused buffer. The queue does not
//! change meanwhile, so from the second request on the answer is the event
//! loop's last one, reused (`http::PollEvents`), as in the load harness.
//! `poll/parse+route+read+write` forgets it first: every request reads the
//! ring (the cost after each publish, or for a cursor no other poller had).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use floorbell_benches::payment_event;
use floorbell_core::qr::{prepare_event, TableSet};
use floorbell_server::api::{self, Action};
use floorbell_server::config::{Config, ServeArgs};
use floorbell_server::engine::{Engine, Outcome, WriteRequest};
use floorbell_server::http::{parse_head, DateCache, StreamBudget, MAX_STREAMED_BYTES};

fn poll(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let args = ServeArgs {
        data_dir: Some(dir.path().to_path_buf()),
        qr_token: Some("benchqr".into()),
        admin_token: Some("benchadmin".into()),
        ..Default::default()
    };
    let (engine, _) = Engine::open(Config::from_args(&args).unwrap()).unwrap();
    let mut hashes = Vec::new();
    for i in 0..1_000 {
        let prepared = prepare_event(payment_event(i).as_bytes(), &TableSet::default()).unwrap();
        match engine
            .write_blocking(WriteRequest::PublishEvent(prepared))
            .unwrap()
        {
            Outcome::Published { hash } => hashes.push(hash),
            other => panic!("publish failed: {other:?}"),
        }
    }
    let cursor = floorbell_core::ring::format_hash(hashes[1_000 - 11]);
    let request = format!(
        "GET /api/v4/events?hash={} HTTP/1.1\r\nHost: 127.0.0.1:8000\r\ntoken: benchqr\r\n\r\n",
        std::str::from_utf8(&cursor).unwrap()
    )
    .into_bytes();
    let date = DateCache::default();
    let budget = StreamBudget::new(MAX_STREAMED_BYTES);
    let mut out = Vec::with_capacity(16 * 1024);
    let mut scratch = api::Scratch::default();
    let mut g = c.benchmark_group("poll");
    g.throughput(Throughput::Elements(1));
    let mut answer = |out: &mut Vec<u8>, buf: &mut Vec<u8>, fresh: bool| {
        if fresh {
            scratch.events.mark = None;
        }
        let head = parse_head(buf).unwrap().unwrap();
        assert!(api::check_auth(&engine, &head, buf, None).is_none());
        let now = floorbell_server::engine::now_ms();
        match api::handle(&engine, &head, buf, now, &mut scratch) {
            Action::Events => {
                out.clear();
                let streamed = scratch.events.write(out, false, false, &date, &budget);
                assert!(streamed.is_none());
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    // The answer holds the 10 newest events (checked once, untimed).
    let mut buf = request.clone();
    answer(&mut out, &mut buf, true);
    let body_at = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let body: serde_json::Value = serde_json::from_slice(&out[body_at..]).unwrap();
    assert_eq!(body["data"]["updates"].as_array().unwrap().len(), 10);
    for (name, fresh) in [
        ("parse+route+write", false),
        ("parse+route+read+write", true),
    ] {
        g.bench_function(name, |b| {
            let mut buf = request.clone();
            b.iter(|| {
                answer(&mut out, &mut buf, fresh);
                out.len()
            })
        });
    }
    g.finish();
    engine.shutdown();
}

criterion_group!(benches, poll);
criterion_main!(benches);
