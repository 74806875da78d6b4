//! One contract test suite run against every `LinkStore`: memory, file and Redis
//! (a real redis-server on a free loopback port). `peer` is a second handle on the
//! same backing state (another process or replica) when the store shares it.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::link_store::{FileLinkStore, LinkStore, MemoryLinkStore};
use super::links::LinkedAccount;
use super::redis_links::RedisLinkStore;
use crate::config::Secret;
use crate::identity::ExternalId;
use crate::session::store::contract_tests::start_redis;

fn xid(id: &str) -> ExternalId {
    ExternalId {
        source: "google".into(),
        id: id.into(),
    }
}

fn la(u: &str, key: Option<&str>) -> LinkedAccount {
    LinkedAccount {
        username: u.into(),
        key: key.map(str::to_string),
        pending: false,
    }
}

fn contract(store: &dyn LinkStore, peer: &dyn LinkStore) {
    assert_eq!(store.get("jira", &xid("1")).unwrap(), None);
    assert!(store.for_target("jira").unwrap().is_empty());

    store
        .put("jira", &xid("1"), &la("ann", Some("K1")))
        .unwrap();
    store.put("jira", &xid("2"), &la("bo", None)).unwrap();
    store
        .put("confluence", &xid("1"), &la("ann-c", None))
        .unwrap();
    // An id with characters that must not confuse the encoding.
    let odd = ExternalId {
        source: "oidc:x".into(),
        id: "a\"b\\c d".into(),
    };
    store.put("jira", &odd, &la("odd", None)).unwrap();

    assert_eq!(
        peer.get("jira", &xid("1")).unwrap(),
        Some(la("ann", Some("K1")))
    );
    let all = peer.for_target("jira").unwrap();
    let want: BTreeMap<ExternalId, LinkedAccount> = [
        (xid("1"), la("ann", Some("K1"))),
        (xid("2"), la("bo", None)),
        (odd.clone(), la("odd", None)),
    ]
    .into();
    assert_eq!(all, want);
    assert_eq!(peer.for_target("confluence").unwrap().len(), 1);

    // A pending mark (account created, groups not yet confirmed) round-trips.
    let pending = LinkedAccount {
        pending: true,
        ..la("pat", Some("K9"))
    };
    store.put("jira", &xid("9"), &pending).unwrap();
    assert_eq!(peer.get("jira", &xid("9")).unwrap(), Some(pending));
    store.remove("jira", &xid("9")).unwrap();

    // put replaces (a rename).
    peer.put("jira", &xid("1"), &la("ann.b", Some("K1")))
        .unwrap();
    assert_eq!(
        store.get("jira", &xid("1")).unwrap(),
        Some(la("ann.b", Some("K1")))
    );

    // put_new: only the first link of a person is recorded.
    assert_eq!(
        store.put_new("jira", &xid("3"), &la("cy", None)).unwrap(),
        None
    );
    assert_eq!(
        peer.put_new("jira", &xid("3"), &la("cy2", None)).unwrap(),
        Some(la("cy", None))
    );
    assert_eq!(store.get("jira", &xid("3")).unwrap(), Some(la("cy", None)));

    // remove, seen by the peer; removing again is fine.
    store.remove("jira", &xid("2")).unwrap();
    store.remove("jira", &xid("2")).unwrap();
    assert_eq!(peer.get("jira", &xid("2")).unwrap(), None);
    assert_eq!(peer.for_target("jira").unwrap().len(), 3);
    assert_eq!(
        peer.get("confluence", &xid("1")).unwrap(),
        Some(la("ann-c", None))
    );
}

#[test]
fn memory_link_store_contract() {
    let s = MemoryLinkStore::default();
    contract(&s, &s);
}

#[test]
fn file_link_store_contract_with_two_processes() {
    let tmp = crate::test_support::temp_dir("links-contract");
    let dir = tmp.path().join("state");
    let a = FileLinkStore::open(&dir).unwrap();
    let b = FileLinkStore::open(&dir).unwrap();
    contract(&a, &b);
}

#[tokio::test]
async fn redis_link_store_contract_with_two_replicas() {
    let Some(server) = start_redis().await else {
        return;
    };
    let url = Secret::new(server.url.clone());
    let a = RedisLinkStore::connect(&url).unwrap();
    let b = RedisLinkStore::connect(&url).unwrap();
    contract(&a, &b);

    // Concurrent first links of one person from many threads: exactly one wins and
    // every loser is told which link exists.
    let stores: Vec<Arc<RedisLinkStore>> = (0..8)
        .map(|_| Arc::new(RedisLinkStore::connect(&url).unwrap()))
        .collect();
    let handles: Vec<_> = stores
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            std::thread::spawn(move || {
                s.put_new("jira", &xid("race"), &la(&format!("u{i}"), None))
                    .unwrap()
            })
        })
        .collect();
    let results: Vec<Option<LinkedAccount>> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_none()).count(), 1);
    let winner = a.get("jira", &xid("race")).unwrap().unwrap();
    assert!(results.iter().flatten().all(|existing| *existing == winner));
}

#[tokio::test]
async fn redis_link_store_reports_an_unreachable_redis_and_recovers() {
    let Some(mut server) = start_redis().await else {
        return;
    };
    let url = Secret::new(server.url.clone());
    let s = RedisLinkStore::connect(&url).unwrap();
    s.put("jira", &xid("1"), &la("ann", None)).unwrap();
    server.kill().await.unwrap();
    let err = s.get("jira", &xid("1")).unwrap_err().to_string();
    assert!(err.contains("redis_url"), "{err}");
    // While it is down, calls fail at once instead of connecting again each time.
    let t0 = std::time::Instant::now();
    let err = s.get("jira", &xid("1")).unwrap_err().to_string();
    assert!(err.contains("retrying after"), "{err}");
    assert!(t0.elapsed() < std::time::Duration::from_millis(50));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Redis back (empty: no persistence): the store reconnects by itself.
    let _again = crate::sandbox::redis_server::RedisServer::start_on(server.port)
        .await
        .unwrap();
    assert_eq!(s.get("jira", &xid("1")).unwrap(), None);
    s.put("jira", &xid("1"), &la("ann", None)).unwrap();
    assert_eq!(s.get("jira", &xid("1")).unwrap(), Some(la("ann", None)));
}

#[tokio::test]
async fn moving_to_redis_imports_the_link_file_once_without_overwriting() {
    let Some(server) = start_redis().await else {
        return;
    };
    let tmp = crate::test_support::temp_dir("links-import");
    let dir = tmp.path().join("state");
    let file = FileLinkStore::open(&dir).unwrap();
    file.put("jira", &xid("1"), &la("ann", Some("K1"))).unwrap();
    file.put("jira", &xid("2"), &la("bo", None)).unwrap();
    file.put("confluence", &xid("1"), &la("ann-c", None))
        .unwrap();
    file.put("gone-target", &xid("1"), &la("x", None)).unwrap();
    let url = Secret::new(server.url.clone());
    let redis = RedisLinkStore::connect(&url).unwrap();
    // Already in Redis (a replica linked it first): kept.
    redis.put("jira", &xid("2"), &la("bo.new", None)).unwrap();
    let added = redis
        .import_file_once(&dir, &["jira", "confluence"])
        .unwrap();
    assert_eq!(added, 2);
    assert_eq!(
        redis.get("jira", &xid("1")).unwrap(),
        Some(la("ann", Some("K1")))
    );
    assert_eq!(
        redis.get("jira", &xid("2")).unwrap(),
        Some(la("bo.new", None))
    );
    assert_eq!(redis.for_target("confluence").unwrap().len(), 1);
    assert!(redis.for_target("gone-target").unwrap().is_empty());
    // Once: a later change to the file is not imported again.
    file.put("jira", &xid("3"), &la("cy", None)).unwrap();
    assert_eq!(redis.import_file_once(&dir, &["jira"]).unwrap(), 0);
    assert_eq!(redis.get("jira", &xid("3")).unwrap(), None);
    // No file: nothing to do.
    let empty = dir.join("none");
    assert_eq!(redis.import_file_once(&empty, &["jira"]).unwrap(), 0);
}
