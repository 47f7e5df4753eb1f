use rocketstore::{GetStatus, Message, Store, StoreConfig};

#[test]
fn smoke() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::small()).unwrap();
    let r = store
        .put(
            &Message::new("orders", 3, b"body")
                .with_tags("TagA")
                .with_keys(["ORDER-100"]),
        )
        .unwrap();
    assert_eq!(r.queue_offset, 0);
    let g = store.get("orders", 3, 0, 32).unwrap();
    assert_eq!(g.status(), GetStatus::Found);
    assert_eq!(g.messages().next().unwrap().body(), b"body");
    let hits = store
        .query_by_key("orders", "ORDER-100", 0, i64::MAX, 16)
        .unwrap();
    assert_eq!(hits.len(), 1);
    for i in 0..5000u32 {
        store
            .put(
                &Message::new("orders", (i % 4) as i32, &vec![7u8; 700])
                    .with_keys([format!("K{i}")]),
            )
            .unwrap();
    }
    store.close().unwrap();
    drop(store);
    let store = Store::open(dir.path(), StoreConfig::small()).unwrap();
    println!("{:?}", store.recovery_report());
    assert_eq!(store.max_offset("orders", 3).unwrap(), 1251);
    let hits = store
        .query_by_key("orders", "K4999", 0, i64::MAX, 16)
        .unwrap();
    assert_eq!(hits.len(), 1);
}
