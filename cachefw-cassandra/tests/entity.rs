//! What `#[derive(Entity)]` generates, checked without a server: the CQL of
//! every statement (quoting, `frozen<…>`, the `TTL()` selects), the cache
//! keys (escaping, the partition entry), and binding and reading rows wider
//! than the driver's 16-value tuples.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use cachefw_cassandra::Entity;
use scylla::deserialize::FrameSlice;
use scylla::deserialize::row::ColumnIterator;
use scylla::frame::response::result::{ColumnSpec, ColumnType, NativeType, TableSpec};
use scylla::serialize::row::{RowSerializationContext, SerializeRow};
use scylla::serialize::writers::RowWriter;
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
    pub nested: Vec<Vec<String>>,
    pub keyed_by_set: HashMap<BTreeSet<i32>, HashSet<Vec<u8>>>,
    pub maybe: Option<f64>,
}

/// Reserved words and capitals, as names of the keyspace, table, key and
/// regular columns.
#[derive(Clone, Debug, Serialize, Deserialize, Entity)]
#[entity(keyspace = "Shop", table = "table", ttl = "1m")]
pub struct Reserved {
    #[partition_key]
    #[column(name = "from")]
    pub source: String,
    #[clustering_key(order = "desc")]
    #[column(name = "order")]
    pub rank: i32,
    #[column(name = "userId")]
    pub user_id: Uuid,
    pub select: String,
    pub key: i64,
}

/// Only keys, an `Option` and collections: no column whose `TTL()` always
/// answers for the row.
#[derive(Clone, Debug, Serialize, Deserialize, Entity)]
#[entity(keyspace = "ks", table = "tags", ttl = "1m")]
pub struct Tags {
    #[partition_key]
    pub id: i64,
    pub note: Option<String>,
    pub tags: BTreeSet<String>,
}

/// A table of counters, one of them renamed (to a reserved word), keyed by
/// a partition and a clustering column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(keyspace = "shop", table = "page_hits", ttl = "1m", write = "through")]
pub struct PageHits {
    #[partition_key]
    pub site: String,
    #[clustering_key]
    pub path: String,
    #[counter]
    pub views: i64,
    #[counter]
    #[column(name = "from")]
    pub from_search: i64,
}

/// Twenty columns: more than the 16 values a tuple binds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Entity)]
#[entity(keyspace = "ks", table = "wide", ttl = "1m")]
pub struct Wide {
    #[partition_key]
    pub c00: i64,
    pub c01: String,
    pub c02: i32,
    pub c03: bool,
    pub c04: Option<String>,
    pub c05: Vec<i32>,
    pub c06: i64,
    pub c07: String,
    pub c08: i32,
    pub c09: f64,
    pub c10: i64,
    pub c11: String,
    pub c12: i32,
    pub c13: bool,
    pub c14: Option<i64>,
    pub c15: Vec<String>,
    pub c16: i64,
    pub c17: String,
    pub c18: i32,
    pub c19: Uuid,
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
    assert_eq!(
        cql.select_with_ttl,
        Some("SELECT id, name, mail, TTL(name), TTL(mail) FROM shop.users WHERE id = ?")
    );
    assert_eq!(cql.delete, "DELETE FROM shop.users WHERE id = ?");
    assert_eq!(cql.select_partition, cql.select);
    assert_eq!(cql.select_partition_with_ttl, cql.select_with_ttl);
    assert_eq!((User::KEYSPACE, User::TABLE), ("shop", "users"));
    assert_eq!(User::TTL, Duration::from_secs(600));
    assert_eq!(User::COLUMNS, 3);
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
    assert_eq!(
        cql.select_partition_with_ttl,
        Some(
            "SELECT user_id, day, at, seq, kind, TTL(kind) FROM shop.events \
             WHERE user_id = ? AND day = ?"
        )
    );
    const { assert!(Event::CACHE_PARTITIONS) };
}

#[test]
fn reserved_words_and_capitals_are_quoted_everywhere() {
    let cql = Reserved::CQL;
    assert_eq!(
        cql.create_table,
        "CREATE TABLE IF NOT EXISTS \"Shop\".\"table\" (\"from\" text, \"order\" int, \
         \"userId\" uuid, \"select\" text, key bigint, PRIMARY KEY ((\"from\"), \"order\")) \
         WITH CLUSTERING ORDER BY (\"order\" DESC)"
    );
    assert_eq!(
        cql.insert,
        "INSERT INTO \"Shop\".\"table\" (\"from\", \"order\", \"userId\", \"select\", key) \
         VALUES (?, ?, ?, ?, ?)"
    );
    assert_eq!(
        cql.select_with_ttl,
        Some(
            "SELECT \"from\", \"order\", \"userId\", \"select\", key, TTL(\"userId\"), \
             TTL(\"select\"), TTL(key) FROM \"Shop\".\"table\" WHERE \"from\" = ? AND \"order\" = ?"
        )
    );
    assert_eq!(
        cql.delete,
        "DELETE FROM \"Shop\".\"table\" WHERE \"from\" = ? AND \"order\" = ?"
    );
    // The cache key names the table as written.
    let key = ReservedKey {
        source: "s".into(),
        rank: 1,
    };
    assert_eq!(Reserved::cache_key(&key), "table:s:1");
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
         tree_map map<int, frozen<list<text>>>, nested list<frozen<list<text>>>, \
         keyed_by_set map<frozen<set<int>>, frozen<set<blob>>>, maybe double, \
         PRIMARY KEY ((key)))"
    );
    assert_eq!(Collections::TTL, Duration::from_secs(86_400));
    // The blob is the one column whose TTL always answers for the row.
    assert_eq!(
        Collections::CQL.select_with_ttl,
        Some(
            "SELECT key, blob, list, hash_set, tree_set, hash_map, tree_map, nested, \
             keyed_by_set, maybe, TTL(blob), TTL(maybe) FROM ks.collections WHERE key = ?"
        )
    );
}

#[test]
fn a_row_whose_ttl_cannot_be_read_has_no_ttl_select() {
    assert_eq!(Tags::CQL.select_with_ttl, None);
    assert_eq!(Tags::CQL.select_partition_with_ttl, None);
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
        "events:00000000-0000-0000-0000-000000006f9e:20:%partition"
    );
}

#[test]
fn text_keys_are_escaped_and_never_collide() {
    let key = |source: &str, rank| {
        Reserved::cache_key(&ReservedKey {
            source: source.into(),
            rank,
        })
    };
    assert_eq!(key("a:b%c", 1), "table:a%3Ab%25c:1");
    // Without escaping, `a:1` + 2 and `a` + … would both start `table:a:1`.
    assert_ne!(key("a:1", 2), key("a", 1));
    assert_eq!(key("a:1", 2), "table:a%3A1:2");
    assert_ne!(key("%3A", 1), key(":", 1));
}

#[test]
fn a_clustering_value_cannot_name_the_partition_entry() {
    #[derive(Clone, Debug, Serialize, Deserialize, Entity)]
    #[entity(keyspace = "ks", table = "notes", ttl = "1m", cache_partitions = true)]
    pub struct Note {
        #[partition_key]
        pub owner: String,
        #[clustering_key]
        pub title: String,
        pub body: String,
    }
    let partition = Note::partition_cache_key(&NotePartition { owner: "o".into() });
    assert_eq!(partition, "notes:o:%partition");
    for title in ["%partition", "#partition", "%25partition", "", "partition"] {
        let row = Note::cache_key(&NoteKey {
            owner: "o".into(),
            title: title.into(),
        });
        assert_ne!(row, partition, "the row titled {title:?}");
    }
}

fn spec(name: &str, typ: ColumnType<'static>) -> ColumnSpec<'static> {
    ColumnSpec::owned(
        name.into(),
        typ,
        TableSpec::owned("ks".into(), "wide".into()),
    )
}

fn native(typ: NativeType) -> ColumnType<'static> {
    ColumnType::Native(typ)
}

fn list(item: ColumnType<'static>) -> ColumnType<'static> {
    ColumnType::Collection {
        frozen: false,
        typ: scylla::frame::response::result::CollectionType::List(Box::new(item)),
    }
}

#[test]
fn rows_wider_than_a_tuple_bind_and_read_in_field_order() {
    use NativeType::{BigInt, Boolean, Double, Int, Text, Uuid as UuidType};
    let types = [
        native(BigInt),
        native(Text),
        native(Int),
        native(Boolean),
        native(Text),
        list(native(Int)),
        native(BigInt),
        native(Text),
        native(Int),
        native(Double),
        native(BigInt),
        native(Text),
        native(Int),
        native(Boolean),
        native(BigInt),
        list(native(Text)),
        native(BigInt),
        native(Text),
        native(Int),
        native(UuidType),
    ];
    let specs: Vec<ColumnSpec<'static>> = types
        .into_iter()
        .enumerate()
        .map(|(index, typ)| spec(&format!("c{index:02}"), typ))
        .collect();
    assert_eq!(Wide::COLUMNS, 20);
    let row = Wide {
        c00: 0,
        c01: "one".into(),
        c02: 2,
        c03: true,
        c04: None,
        c05: vec![5, 5],
        c06: 6,
        c07: "seven".into(),
        c08: 8,
        c09: 9.5,
        c10: 10,
        c11: "eleven".into(),
        c12: 12,
        c13: false,
        c14: Some(14),
        c15: vec!["fifteen".into()],
        c16: 16,
        c17: "seventeen".into(),
        c18: 18,
        c19: Uuid::from_u128(19),
    };

    let mut buffer = Vec::new();
    let mut writer = RowWriter::new(&mut buffer);
    row.values()
        .serialize(&RowSerializationContext::from_specs(&specs), &mut writer)
        .expect("every value serializes to its column's type");
    assert_eq!(writer.value_count(), 20);

    // A result row is the same sequence of length-prefixed values.
    Wide::type_check(&specs).expect("the columns have the fields' types");
    let frame = Bytes::from(buffer);
    let mut columns = ColumnIterator::new(&specs, FrameSlice::new(&frame));
    let read = Wide::from_columns(&mut columns).expect("the row reads back");
    assert_eq!(read, row);
    assert_eq!(columns.columns_remaining(), 0);

    // A column of another type is refused by the type check, naming it.
    let mut wrong = specs.clone();
    wrong[7] = spec("c07", native(Int));
    let error = Wide::type_check(&wrong).expect_err("text is not int");
    assert!(error.to_string().contains("c07"), "{error}");
    // So is a binding of the wrong number of values.
    let mut buffer = Vec::new();
    let mut writer = RowWriter::new(&mut buffer);
    let short = RowSerializationContext::from_specs(&specs[..19]);
    assert!(row.values().serialize(&short, &mut writer).is_err());
}

/// Every repository future is `Send`, so a service can spawn it (the bound
/// values hold `&(dyn SerializeValue + Sync)` for that). Checked when this
/// file compiles; the function is never called.
#[test]
fn repository_futures_are_send() {
    use cachefw_cassandra::Repository;

    fn send<F: Future + Send>(_: &F) {}
    fn check(repo: &Repository<Event>, event: &Event, rows: &[Event]) {
        let key = event.key();
        let partition = Event::partition_of(&key);
        send(&repo.save(event));
        send(&repo.save_with_ttl(event, Duration::from_secs(1)));
        send(&repo.save_all(rows));
        send(&repo.insert_if_not_exists(event));
        send(&repo.find(&key));
        send(&repo.find_partition(&partition));
        send(&repo.find_partition_page(&partition, 10, None));
        send(&repo.delete(&key));
        send(&repo.create_table());
        send(&repo.patch(&key, &EventPatch::default()));
        send(&repo.find_many(std::slice::from_ref(&key)));
        send(&repo.backlog());
    }
    let _: fn(&Repository<Event>, &Event, &[Event]) = check;
    fn check_counters(repo: &Repository<PageHits>, key: &PageHitsKey) {
        send(&repo.increment(key, PageHitsCounter::Views, 1));
    }
    let _: fn(&Repository<PageHits>, &PageHitsKey) = check_counters;
}

/// An entity declared by a `macro_rules!` macro: its arguments arrive in
/// invisible groups, which the derive sees through.
macro_rules! declared {
    ($name:ident, $table:literal, $write:literal) => {
        #[derive(Clone, Debug, Serialize, Deserialize, Entity)]
        #[entity(keyspace = "ks", table = $table, ttl = "1m", write = $write, cache_partitions = false)]
        pub struct $name {
            #[partition_key]
            pub id: i64,
            pub total: i64,
        }
    };
}

declared!(Declared, "declared", "behind");

#[test]
fn write_modes_default_to_invalidate() {
    use cachefw_cassandra::WriteMode;
    assert_eq!(User::WRITE, WriteMode::Invalidate);
    assert_eq!(Declared::WRITE, WriteMode::Behind);
    assert_eq!(Declared::CQL.update, "UPDATE ks.declared");
}

#[test]
fn patches_set_only_their_columns() {
    let patch = ReservedPatch {
        select: Some("picked".into()),
        key: Some(3),
        ..Default::default()
    };
    assert_eq!(
        Reserved::patch_values(&patch).columns(),
        ["\"select\"", "key"],
        "quoted as in every statement, in field order"
    );
    assert!(
        Reserved::patch_values(&ReservedPatch::default())
            .columns()
            .is_empty()
    );
    assert_eq!(Reserved::CQL.update, "UPDATE \"Shop\".\"table\"");
    assert_eq!(
        Reserved::CQL.key_condition,
        "\"from\" = ? AND \"order\" = ?"
    );
    assert_eq!(
        Event::CQL.key_condition,
        "user_id = ? AND day = ? AND at = ? AND seq = ?"
    );

    let mut row = Reserved {
        source: "web".into(),
        rank: 1,
        user_id: Uuid::nil(),
        select: "old".into(),
        key: 1,
    };
    row.apply(&patch);
    assert_eq!((row.select.as_str(), row.key, row.rank), ("picked", 3, 1));

    let mut tags = Tags {
        id: 1,
        note: Some("kept".into()),
        tags: BTreeSet::from(["a".to_owned()]),
    };
    tags.apply(&TagsPatch {
        tags: Some(BTreeSet::new()),
        ..Default::default()
    });
    assert_eq!(tags.note.as_deref(), Some("kept"), "a field left out stays");
    tags.apply(&TagsPatch {
        note: Some(None),
        ..Default::default()
    });
    assert_eq!(tags.note, None, "Some(None) sets null");
}

/// A patch travels through a write-behind record as MessagePack: "set it
/// null" (`Some(None)`) must not read back as "leave it" (`None`).
#[test]
fn a_patch_keeps_set_null_apart_from_leave_alone() {
    let round_trip = |patch: &TagsPatch| -> TagsPatch {
        let bytes = rmp_serde::to_vec_named(patch).expect("encodes");
        rmp_serde::from_slice(&bytes).expect("decodes")
    };
    let null = TagsPatch {
        note: Some(None),
        ..Default::default()
    };
    assert_eq!(round_trip(&null), null);
    let set = TagsPatch {
        note: Some(Some("n".into())),
        tags: Some(BTreeSet::from(["t".to_owned()])),
    };
    assert_eq!(round_trip(&set), set);
    assert_eq!(round_trip(&TagsPatch::default()), TagsPatch::default());
    let key = EventKey {
        user_id: Uuid::nil(),
        day: 1,
        at: 2,
        seq: 3,
    };
    let bytes = rmp_serde::to_vec_named(&key).expect("encodes");
    assert_eq!(
        rmp_serde::from_slice::<EventKey>(&bytes).expect("decodes"),
        key
    );
}

#[test]
fn counters_have_their_own_statements_and_no_ttl_select() {
    assert_eq!(
        PageHits::CQL.create_table,
        "CREATE TABLE IF NOT EXISTS shop.page_hits (site text, path text, views counter, \
         \"from\" counter, PRIMARY KEY ((site), path))"
    );
    assert_eq!(PageHits::COUNTERS, ["views", "from"]);
    assert_eq!(
        PageHits::increment_cql(PageHitsCounter::Views),
        "UPDATE shop.page_hits SET views = views + ? WHERE site = ? AND path = ?"
    );
    assert_eq!(
        PageHits::increment_cql(PageHitsCounter::FromSearch),
        "UPDATE shop.page_hits SET \"from\" = \"from\" + ? WHERE site = ? AND path = ?"
    );
    // Counters have no TTL(): Cassandra refuses it on them.
    assert_eq!(PageHits::CQL.select_with_ttl, None);
    assert_eq!(PageHits::CQL.select_partition_with_ttl, None);
    // Counters are incremented, never set: the patch has no field.
    assert!(
        PageHits::patch_values(&PageHitsPatch::default())
            .columns()
            .is_empty()
    );
    assert!(User::COUNTERS.is_empty());
}

#[test]
fn a_counter_never_incremented_reads_as_zero() {
    let specs = [
        spec("site", native(NativeType::Text)),
        spec("path", native(NativeType::Text)),
        spec("views", native(NativeType::Counter)),
        spec("from", native(NativeType::Counter)),
    ];
    PageHits::type_check(&specs).expect("counter columns read as counters");
    // site "s", path "/", views 7, from null: length-prefixed values, -1
    // for null.
    let mut frame = Vec::new();
    for value in [&b"s"[..], &b"/"[..], &7_i64.to_be_bytes()[..]] {
        frame.extend_from_slice(&i32::try_from(value.len()).expect("short").to_be_bytes());
        frame.extend_from_slice(value);
    }
    frame.extend_from_slice(&(-1_i32).to_be_bytes());
    let frame = Bytes::from(frame);
    let mut columns = ColumnIterator::new(&specs, FrameSlice::new(&frame));
    let row = PageHits::from_columns(&mut columns).expect("the row reads");
    assert_eq!(
        row,
        PageHits {
            site: "s".into(),
            path: "/".into(),
            views: 7,
            from_search: 0,
        }
    );
    // A bigint column is not a counter, and the check names it.
    let mut wrong = specs.clone();
    wrong[2] = spec("views", native(NativeType::BigInt));
    let error = PageHits::type_check(&wrong).expect_err("bigint is not counter");
    assert!(error.to_string().contains("views"), "{error}");
}
