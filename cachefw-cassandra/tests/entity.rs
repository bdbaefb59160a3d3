//! What `#[derive(Entity)]` generates, checked without a server: the CQL of
//! every statement, the bind order, and the cache key of single, composite
//! and clustered keys, `desc` order, renamed columns and every mapped type.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use cachefw_cassandra::Entity;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, Serialize, Deserialize, Entity)]
#[entity(keyspace = "shop", table = "users", ttl = "10m")]
pub struct User {
    #[partition_key]
    pub id: Uuid,
    pub name: String,
    #[column(name = "mail")]
    pub email: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, Entity)]
#[entity(
    keyspace = "shop",
    table = "events",
    ttl = "1m",
    cache_partitions = true
)]
pub struct Event {
    #[partition_key]
    pub user_id: Uuid,
    #[partition_key]
    pub day: i32,
    #[clustering_key]
    pub at: i64,
    #[clustering_key(order = "desc")]
    pub seq: i32,
    pub kind: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, Entity)]
#[entity(keyspace = "ks", table = "everything", ttl = "1h30m")]
pub struct Everything {
    #[partition_key]
    #[column(name = "Key")]
    pub key: String,
    pub tiny: i8,
    pub small: i16,
    pub int: i32,
    pub big: i64,
    pub float: f32,
    pub double: f64,
    pub flag: bool,
    pub id: uuid::Uuid,
    pub at: chrono::DateTime<chrono::Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize, Entity)]
#[entity(keyspace = "ks", table = "collections", ttl = "1d")]
pub struct Collections {
    #[partition_key]
    pub key: i64,
    pub blob: Vec<u8>,
    pub list: Vec<String>,
    pub hash_set: HashSet<i32>,
    pub tree_set: BTreeSet<Uuid>,
    pub hash_map: HashMap<String, i64>,
    pub tree_map: BTreeMap<i32, Vec<String>>,
    pub maybe: Option<f64>,
}

#[test]
fn single_key_statements_and_renamed_columns() {
    let cql = User::CQL;
    assert_eq!(
        cql.create_table,
        "CREATE TABLE IF NOT EXISTS shop.users (id uuid, name text, mail text, PRIMARY KEY ((id)))"
    );
    assert_eq!(
        cql.insert,
        "INSERT INTO shop.users (id, name, mail) VALUES (?, ?, ?)"
    );
    assert_eq!(
        cql.insert_with_ttl,
        "INSERT INTO shop.users (id, name, mail) VALUES (?, ?, ?) USING TTL ?"
    );
    assert_eq!(
        cql.insert_if_not_exists,
        "INSERT INTO shop.users (id, name, mail) VALUES (?, ?, ?) IF NOT EXISTS"
    );
    assert_eq!(
        cql.select,
        "SELECT id, name, mail FROM shop.users WHERE id = ?"
    );
    assert_eq!(cql.delete, "DELETE FROM shop.users WHERE id = ?");
    assert_eq!(cql.select_partition, cql.select);
    assert_eq!((User::KEYSPACE, User::TABLE), ("shop", "users"));
    assert_eq!(User::TTL, Duration::from_secs(600));
    const { assert!(!User::CACHE_PARTITIONS) };
}

#[test]
fn composite_and_clustered_keys_in_declared_order() {
    let cql = Event::CQL;
    assert_eq!(
        cql.create_table,
        "CREATE TABLE IF NOT EXISTS shop.events (user_id uuid, day int, at bigint, seq int, \
         kind text, PRIMARY KEY ((user_id, day), at, seq)) \
         WITH CLUSTERING ORDER BY (at ASC, seq DESC)"
    );
    assert_eq!(
        cql.select,
        "SELECT user_id, day, at, seq, kind FROM shop.events \
         WHERE user_id = ? AND day = ? AND at = ? AND seq = ?"
    );
    assert_eq!(
        cql.delete,
        "DELETE FROM shop.events WHERE user_id = ? AND day = ? AND at = ? AND seq = ?"
    );
    assert_eq!(
        cql.select_partition,
        "SELECT user_id, day, at, seq, kind FROM shop.events WHERE user_id = ? AND day = ?"
    );
    const { assert!(Event::CACHE_PARTITIONS) };
}

#[test]
fn cache_keys_align_with_primary_keys() {
    let id = Uuid::from_u128(0x6f9e);
    assert_eq!(
        User::cache_key(&UserKey { id }),
        "users:00000000-0000-0000-0000-000000006f9e"
    );
    let event = Event {
        user_id: id,
        day: 20,
        at: 1_700,
        seq: 3,
        kind: "login".into(),
    };
    let key = event.key();
    assert_eq!(
        key,
        EventKey {
            user_id: id,
            day: 20,
            at: 1_700,
            seq: 3
        }
    );
    assert_eq!(
        Event::cache_key(&key),
        "events:00000000-0000-0000-0000-000000006f9e:20:1700:3"
    );
    let partition = Event::partition_of(&key);
    assert_eq!(
        partition,
        EventPartition {
            user_id: id,
            day: 20
        }
    );
    assert_eq!(
        Event::partition_cache_key(&partition),
        "events:00000000-0000-0000-0000-000000006f9e:20:#partition"
    );
}

#[test]
fn every_mapped_type_has_its_column_type() {
    assert_eq!(
        Everything::CQL.create_table,
        "CREATE TABLE IF NOT EXISTS ks.everything (\"Key\" text, tiny tinyint, small smallint, \
         int int, big bigint, float float, double double, flag boolean, id uuid, at timestamp, \
         PRIMARY KEY ((\"Key\")))"
    );
    assert_eq!(Everything::TTL, Duration::from_secs(5_400));
    assert_eq!(
        Collections::CQL.create_table,
        "CREATE TABLE IF NOT EXISTS ks.collections (key bigint, blob blob, list list<text>, \
         hash_set set<int>, tree_set set<uuid>, hash_map map<text, bigint>, \
         tree_map map<int, list<text>>, maybe double, PRIMARY KEY ((key)))"
    );
    assert_eq!(Collections::TTL, Duration::from_secs(86_400));
}

#[test]
fn rows_bind_in_field_order() {
    use scylla::serialize::row::SerializeRow;
    let user = User {
        id: Uuid::nil(),
        name: "n".into(),
        email: "e".into(),
    };
    assert!(!user.values().is_empty());
    assert!(!user.values_with_ttl(60).is_empty());
    assert!(!User::key_values(&user.key()).is_empty());
}
