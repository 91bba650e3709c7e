//! Criterion benches: the codec, the state machine, and the store writer's
//! group commit (orders per second at batch sizes 1, 16 and 256, with
//! durability sync and async). Run: `cargo bench --bench engine`.
//! Results and the machine they ran on: BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use crema::config::Durability;
use crema::domain::{Chosen, LineRequest, Menu, Order, OrderEvent, OrderRequest};
use crema::persistence::{codec, Batch, Store, StoreWriter};

/// A café's order: an americano, a latte with options and a note, and a
/// croissant (so two station kinds, two tickets).
fn request() -> OrderRequest {
    let mut latte = LineRequest::new("latte", 1);
    latte.options.insert("size".into(), Chosen::One("grande".into()));
    latte.options.insert("milk".into(), Chosen::One("oat".into()));
    latte.options.insert("extras".into(), Chosen::Many(vec!["extra_shot".into(), "vanilla".into()]));
    latte.note = Some("extra hot".into());
    OrderRequest {
        store: Some("gangnam".into()),
        customer: Some("kim".into()),
        items: vec![LineRequest::new("americano", 2), latte, LineRequest::new("croissant", 1)],
    }
}

fn paid_order(id: String) -> Order {
    let request = request();
    let draft = request.validate(&Menu::builtin()).expect("a valid order");
    Order::paid(id, draft, "crema-key".into(), "sim_1".into(), 1_764_057_612_000)
}

fn queued_order(id: String) -> Order {
    let mut order = paid_order(id);
    order.apply(OrderEvent::Queued { queue_seq: 1 }, 1_764_057_612_001).expect("paid → queued");
    order
}

fn codec_bench(c: &mut Criterion) {
    let order = queued_order("0193-bench".into());
    let bytes = codec::encode_order(&order);
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("encode_order", |b| b.iter(|| codec::encode_order(black_box(&order))));
    group.bench_function("decode_order", |b| b.iter(|| codec::decode_order(black_box(&bytes)).expect("decodes")));
    group.finish();
}

fn state_machine_bench(c: &mut Criterion) {
    let menu = Menu::builtin();
    let request = request();
    let mut group = c.benchmark_group("state_machine");
    group.bench_function("validate_request", |b| b.iter(|| black_box(&request).validate(&menu).expect("valid")));
    group.bench_function("full_lifecycle", |b| {
        b.iter_batched(
            || paid_order("0193-life".into()),
            |mut order| {
                for event in [
                    OrderEvent::Queued { queue_seq: 1 },
                    OrderEvent::Started { station: "bar-1".into(), kind: "bar".into() },
                    OrderEvent::Started { station: "oven".into(), kind: "kitchen".into() },
                    OrderEvent::Finished { kind: "kitchen".into() },
                    OrderEvent::Finished { kind: "bar".into() },
                    OrderEvent::PickedUp,
                ] {
                    order.apply(event, 2).expect("legal");
                }
                order
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Orders committed per iteration: each is one writer request, all in flight at once.
const ORDERS_PER_ITER: usize = 512;

fn store_writer_bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut group = c.benchmark_group("store_writer");
    group.throughput(Throughput::Elements(ORDERS_PER_ITER as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for durability in [Durability::Sync, Durability::Async] {
        for max_batch in [1, 16, 256] {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = Store::open(dir.path()).expect("store opens");
            let writer = StoreWriter::start(store, durability, max_batch, 4_096, std::time::Duration::ZERO);
            let orders: Vec<Order> = (0..ORDERS_PER_ITER).map(|n| queued_order(format!("0193-{n:06}"))).collect();
            let name = format!("{durability:?}").to_lowercase();
            group.bench_with_input(BenchmarkId::new(name, max_batch), &max_batch, |b, _| {
                b.iter(|| {
                    runtime.block_on(async {
                        let commits = orders.iter().map(|order| {
                            let mut batch = Batch::new();
                            batch.put_order(order).put_ticket(1, &order.id);
                            writer.commit(batch)
                        });
                        for result in futures_util::future::join_all(commits).await {
                            result.expect("committed");
                        }
                    })
                })
            });
            runtime.block_on(writer.close());
        }
    }
    group.finish();
}

criterion_group!(benches, codec_bench, state_machine_bench, store_writer_bench);
criterion_main!(benches);
