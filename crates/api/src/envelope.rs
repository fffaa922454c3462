//! Success envelopes (seed 004): `{"success": true, "data": …}`, and for lists
//! `"pagination": {"page", "per_page", "total", "total_pages"}`.

use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Serialize, ToSchema)]
pub struct Data<T> {
    pub success: bool,
    pub data: T,
}

pub fn data<T>(data: T) -> Json<Data<T>> {
    Json(Data { success: true, data })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Paged<T> {
    pub success: bool,
    pub data: Vec<T>,
    pub pagination: Pagination,
}

#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct Pagination {
    pub page: u64,
    pub per_page: u64,
    pub total: u64,
    pub total_pages: u64,
}

/// `page` (from 1) and `per_page` (default 25; values above 100 are lowered to 100, as
/// GitHub's API does, rather than refused).
#[derive(Debug, Clone, Copy, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page number, from 1.
    pub page: Option<u64>,
    /// Items per page (1–100, default 25).
    pub per_page: Option<u64>,
}

pub const DEFAULT_PER_PAGE: u64 = 25;
pub const MAX_PER_PAGE: u64 = 100;

impl PageQuery {
    pub fn page(&self) -> u64 {
        self.page.unwrap_or(1).max(1)
    }

    pub fn per_page(&self) -> u64 {
        self.per_page.unwrap_or(DEFAULT_PER_PAGE).clamp(1, MAX_PER_PAGE)
    }

    pub fn limit(&self) -> i64 {
        self.per_page() as i64
    }

    pub fn offset(&self) -> i64 {
        ((self.page() - 1).saturating_mul(self.per_page())).min(i64::MAX as u64) as i64
    }

    pub fn wrap<T>(&self, items: Vec<T>, total: i64) -> Json<Paged<T>> {
        let total = total.max(0) as u64;
        let per_page = self.per_page();
        Json(Paged {
            success: true,
            data: items,
            pagination: Pagination { page: self.page(), per_page, total, total_pages: total.div_ceil(per_page) },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_clamped_and_counted() {
        let q = PageQuery { page: Some(3), per_page: Some(500) };
        assert_eq!((q.page(), q.per_page(), q.offset()), (3, 100, 200));
        let q = PageQuery { page: Some(0), per_page: Some(0) };
        assert_eq!((q.page(), q.per_page(), q.offset()), (1, 1, 0));
        let Json(p) = PageQuery { page: None, per_page: None }.wrap(vec![1, 2], 151);
        assert_eq!(p.pagination, Pagination { page: 1, per_page: 25, total: 151, total_pages: 7 });
    }
}
