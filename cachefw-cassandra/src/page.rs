//! Paging through a partition: [`PageToken`], [`Page`], and the read of
//! one page behind [`Repository::find_partition_page`](crate::repository::Repository::find_partition_page).

use scylla::response::{PagingState, PagingStateResponse};

use crate::entity::Entity;
use crate::error::Error;
use crate::row::Timed;
use crate::table::Table;

/// Where a [`Repository::find_partition_page`](crate::repository::Repository::find_partition_page)
/// left off: pass it back for the next page. Its bytes can travel through an
/// API (base64 them) and come back with [`PageToken::from_bytes`].
#[derive(Clone, Debug)]
pub struct PageToken(PagingState);

impl PageToken {
    /// The token's bytes, opaque.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0
            .as_bytes_slice()
            .map(|bytes| bytes.to_vec())
            .unwrap_or_default()
    }

    /// A token from bytes given out by [`to_bytes`](Self::to_bytes).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(PagingState::new_from_raw_bytes(bytes))
    }
}

/// One page of a partition, and the token of the next if there is one.
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// The rows, in clustering order.
    pub rows: Vec<T>,
    /// The token of the next page; `None` on the last.
    pub next: Option<PageToken>,
}

/// One page of `partition` of at most `page_size` rows from `table`,
/// starting where `from` left off (the first page for `None`). Not cached.
pub(crate) async fn find_partition_page<T: Entity>(
    table: &Table<T>,
    partition: &T::Partition,
    page_size: i32,
    from: Option<&PageToken>,
) -> Result<Page<T>, Error> {
    let cql = T::CQL.select_partition;
    let mut statement = table
        .prepared(&table.prepared.select_partition_page, cql)
        .await?
        .clone();
    statement.set_page_size(page_size.max(1));
    let state = from.map_or_else(PagingState::start, |token| token.0.clone());
    let (result, next) = table
        .session
        .execute_single_page(&statement, T::partition_values(partition), state)
        .await
        .map_err(|source| Error::execution(Table::<T>::name(), cql, source))?;
    let rows = result
        .into_rows_result()
        .map_err(|source| Error::statement(cql, source))?
        .rows::<Timed<T>>()
        .map_err(|source| Error::statement(cql, source))?
        .map(|row| row.map(|row| row.entity))
        .collect::<Result<Vec<T>, _>>()
        .map_err(|source| Error::statement(cql, source))?;
    let next = match next {
        PagingStateResponse::HasMorePages { state } => Some(PageToken(state)),
        PagingStateResponse::NoMorePages => None,
    };
    Ok(Page { rows, next })
}
