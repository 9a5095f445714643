//! List pages: `{"object": "list", "data", "first_id", "last_id", "has_more"}` with the
//! API's cursor parameters `order` (`desc` by default), `limit` (1–100, 20 by default),
//! `after` and `before` (ids of items in the list).

use clarion_engine::{MessageQuery, Order};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;

/// The query parameters of a list endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListQuery {
    /// `asc` or `desc` by `created_at`.
    pub order: Option<String>,
    /// Page size.
    pub limit: Option<String>,
    /// Items after this id (in the chosen order).
    pub after: Option<String>,
    /// Items before this id (in the chosen order).
    pub before: Option<String>,
    /// Messages only: those a given run created.
    pub run_id: Option<String>,
}

impl ListQuery {
    /// The page size asked for (1–100, 20 by default).
    fn limit(&self) -> Result<usize, ApiError> {
        match self.limit.as_deref() {
            None => Ok(20),
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => Ok(n),
                _ => Err(ApiError::bad_request(format!(
                    "Invalid 'limit': expected an integer between 1 and 100, got '{text}'."
                ))
                .param("limit")),
            },
        }
    }

    /// The order asked for (`desc` by default).
    fn order(&self) -> Result<Order, ApiError> {
        match self.order.as_deref() {
            None | Some("desc") => Ok(Order::Desc),
            Some("asc") => Ok(Order::Asc),
            Some(other) => Err(ApiError::bad_request(format!(
                "Invalid 'order': expected 'asc' or 'desc', got '{other}'."
            ))
            .param("order")),
        }
    }

    /// The store query for a page of messages (the store pages them, so a page costs the
    /// same on a thread of any length).
    pub fn to_message_query(&self) -> Result<MessageQuery, ApiError> {
        Ok(MessageQuery {
            order: self.order()?,
            limit: self.limit()?,
            after: self.after.clone(),
            before: self.before.clone(),
            run_id: self.run_id.clone(),
            shown_only: false,
        })
    }
}

/// A list object for a page the store already cut.
#[must_use]
pub fn list_page(items: Vec<(String, Value)>, has_more: bool) -> Value {
    json!({
        "object": "list",
        "first_id": items.first().map(|(id, _)| id.clone()),
        "last_id": items.last().map(|(id, _)| id.clone()),
        "has_more": has_more,
        "data": items.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    })
}

/// A page of items, given every item oldest first with its id (for lists bounded by
/// something other than a thread's length: runs, run steps).
pub fn page(mut items: Vec<(String, Value)>, query: &ListQuery) -> Result<Value, ApiError> {
    let limit = query.limit()?;
    if query.order()? == Order::Desc {
        items.reverse();
    }
    let position = |cursor: &str, param: &str| {
        items
            .iter()
            .position(|(id, _)| id == cursor)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Invalid '{param}': no item with id '{cursor}' in this list."
                ))
                .param(param)
            })
    };
    let start = match &query.after {
        Some(after) => position(after, "after")? + 1,
        None => 0,
    };
    let end = match &query.before {
        Some(before) => position(before, "before")?,
        None => items.len(),
    };
    let window: Vec<(String, Value)> = if start < end {
        items.drain(start..end).collect()
    } else {
        Vec::new()
    };
    // `before` pages towards the start: keep the items nearest the cursor.
    let (chosen, has_more) = if query.before.is_some() && query.after.is_none() {
        let skip = window.len().saturating_sub(limit);
        (window[skip..].to_vec(), skip > 0)
    } else {
        let has_more = window.len() > limit;
        (window.into_iter().take(limit).collect(), has_more)
    };
    Ok(json!({
        "object": "list",
        "first_id": chosen.first().map(|(id, _)| id.clone()),
        "last_id": chosen.last().map(|(id, _)| id.clone()),
        "has_more": has_more,
        "data": chosen.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<(String, Value)> {
        (0..n).map(|i| (format!("id{i}"), json!(i))).collect()
    }

    fn q(order: &str, limit: &str, after: Option<&str>, before: Option<&str>) -> ListQuery {
        ListQuery {
            order: Some(order.into()),
            limit: Some(limit.into()),
            after: after.map(Into::into),
            before: before.map(Into::into),
            run_id: None,
        }
    }

    fn data(page: &Value) -> Vec<i64> {
        page["data"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default()
    }

    #[test]
    fn cursors_limits_and_order_page_like_the_api() {
        let p = page(items(5), &q("asc", "2", None, None)).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(data(&p), [0, 1]);
        assert_eq!(p["has_more"], true);
        assert_eq!(p["last_id"], "id1");
        let p =
            page(items(5), &q("asc", "2", Some("id1"), None)).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(data(&p), [2, 3]);
        let p = page(items(5), &q("desc", "10", None, None)).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(data(&p), [4, 3, 2, 1, 0]);
        assert_eq!(p["has_more"], false);
        let p =
            page(items(5), &q("asc", "2", None, Some("id4"))).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(data(&p), [2, 3]);
        assert_eq!(p["has_more"], true);
        let p = page(items(0), &ListQuery::default()).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(p["first_id"], Value::Null);
        for bad in [
            q("up", "2", None, None),
            q("asc", "0", None, None),
            q("asc", "101", None, None),
            q("asc", "2", Some("nope"), None),
        ] {
            assert_eq!(
                page(items(3), &bad).map_err(|e| e.status.as_u16()),
                Err(400)
            );
        }
    }
}
