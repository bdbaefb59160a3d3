use cachefw_cassandra::{Entity, Repository};

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
#[entity(keyspace = "shop", table = "profiles", ttl = "10m", layout = "hash")]
pub struct Profile {
    #[partition_key]
    pub id: i64,
    #[clustering_key]
    pub at: i64,
    pub name: String,
    pub bio: String,
}

// A key column is the row's address, not one of its fields.
async fn key_as_field(profiles: Repository<Profile>) -> Result<(), cachefw_cassandra::Error> {
    let key = ProfileKey { id: 1, at: 2 };
    let _ = profiles.find_fields(&key, &[ProfileField::Name, ProfileField::Id]).await?;
    let _ = profiles.find_fields(&key, &[ProfileField::At]).await?;
    Ok(())
}

fn main() {
    let _ = key_as_field;
}
