//! The one rule of a PATCH field, shared by every aggregate that takes partial changes: absent keeps the value,
//! `null` clears it, a value replaces it. Applied inside `decide`, on the state of now.

/// The value of an optional field after a PATCH: `None` keeps `current`, `Some(v)` makes it `v` (`Some(None)`
/// clears it).
pub fn merged<T: Clone>(current: &Option<T>, change: &Option<Option<T>>) -> Option<T> {
    match change {
        None => current.clone(),
        Some(v) => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_keeps_null_clears_a_value_replaces() {
        assert_eq!(merged(&Some(1), &None), Some(1));
        assert_eq!(merged(&Some(1), &Some(None)), None);
        assert_eq!(merged(&Some(1), &Some(Some(2))), Some(2));
        assert_eq!(merged::<i32>(&None, &Some(Some(2))), Some(2));
    }
}
