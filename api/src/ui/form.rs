//! The UI's forms: what a submitted form holds, how its fields become the API's JSON body, and the problems the
//! API named, by field, for the page to show next to each field.
//!
//! A page's query string is read the same way ([`Form::of_query`]).
//!
//! A field's form name is its JSON pointer in the API's body, written with dots (`kana_name.family` is
//! `/kana_name/family`), so a problem the API names by pointer finds its field without a table; the element's id is
//! the same name with `-` for `.` (`f-kana_name-family`).

use axum::extract::RawQuery;
use serde_json::{Map, Value};

use super::api::Problem;

/// A submitted form (`application/x-www-form-urlencoded`), in its order; a name may repeat (checkboxes).
#[derive(Debug, Default, Clone)]
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Form {
        Form(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }

    /// The query string of a page's address (`?municipality=…&done=…`), read as a form.
    pub fn of_query(query: &RawQuery) -> Form {
        Form::parse(query.0.as_deref().unwrap_or("").as_bytes())
    }

    /// The first value of `name`, or "".
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
    }

    /// Every value of `name` (a group of checkboxes).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    /// `name` trimmed, `None` when blank.
    pub fn value(&self, name: &str) -> Option<&str> {
        Some(self.get(name).trim()).filter(|v| !v.is_empty())
    }

    pub fn csrf(&self) -> &str {
        self.get("csrf")
    }

    pub fn idempotency_key(&self) -> &str {
        self.get("idempotency_key")
    }

    /// The version the page showed (for `If-Match`).
    pub fn version(&self) -> Option<u64> {
        self.get("version").parse().ok()
    }

    /// Sets `name` (a prefill).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }

    /// The fields named `names` as a JSON object, nested at their dots; a blank field is left out (the API
    /// then says it is required, or takes it as not given).
    pub fn json(&self, names: &[&str]) -> Value {
        let mut root = Map::new();
        for name in names {
            if let Some(value) = self.value(name) {
                insert(&mut root, name, Value::String(value.to_owned()));
            }
        }
        Value::Object(root)
    }
}

/// Puts `value` at the dotted `name` in `root`.
pub fn insert(root: &mut Map<String, Value>, name: &str, value: Value) {
    let mut parts = name.split('.').peekable();
    let mut at = root;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            at.insert(part.to_owned(), value);
            return;
        }
        let next = at.entry(part.to_owned()).or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        let Value::Object(next) = next else { return };
        at = next;
    }
}

/// A fresh `Idempotency-Key` for a form (rendered into it; a double click sends it twice, the API applies once).
pub fn new_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The element id of a field named `name`.
pub fn id_of(name: &str) -> String {
    format!("f-{}", name.replace('.', "-"))
}

/// The problems of a submitted form: by field (its form name), and those of no field of the form.
#[derive(Debug, Default, Clone)]
pub struct FieldErrors {
    by_field: Vec<(String, String)>,
    /// What the page says above the form (the problem's detail, and messages of fields the form does not have).
    pub general: Vec<String>,
}

impl FieldErrors {
    /// One problem of the field `name` (a check of the UI's own, e.g. a search condition).
    pub fn add(&mut self, name: &str, message: impl Into<String>) {
        self.by_field.push((name.to_owned(), message.into()));
    }

    /// The API's problem, each field error placed at the form's field of its pointer when `fields` has it
    /// (by pointer prefix: `/business_ids/1` belongs to `business_ids`), else above the form.
    pub fn of(problem: &Problem, fields: &[&str]) -> FieldErrors {
        let mut errors = FieldErrors::default();
        for error in &problem.errors {
            let name = error.field.trim_start_matches('/').replace('/', ".");
            let owner = fields
                .iter()
                .filter(|f| name == **f || name.starts_with(&format!("{f}.")))
                .max_by_key(|f| f.len())
                .copied();
            match owner {
                Some(field) => errors.add(field, error.message.clone()),
                None if error.message.is_empty() => {}
                None => errors.general.push(error.message.clone()),
            }
        }
        errors.general.insert(0, problem.summary().to_owned());
        errors
    }

    /// The messages of the field `name`, in order.
    pub fn of_field(&self, name: &str) -> Vec<&str> {
        self.by_field.iter().filter(|(f, _)| f == name).map(|(_, m)| m.as_str()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.by_field.is_empty() && self.general.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::json;

    use super::*;

    #[test]
    fn dotted_names_nest_and_blank_fields_are_left_out() {
        let form = Form::parse("kana_name.family=%E3%83%A4%E3%83%9E%E3%83%80&kana_name.given=+&sex=1".as_bytes());
        assert_eq!(
            form.json(&["kana_name.family", "kana_name.given", "sex", "phone"]),
            json!({
                "kana_name": {"family": "ヤマダ"}, "sex": "1"
            })
        );
    }

    #[test]
    fn a_problem_finds_its_fields_by_pointer_and_the_rest_goes_above_the_form() {
        let problem = Problem::of(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"type": "/problems/validation", "title": "入力内容に誤りがあります", "detail": "2件",
                "errors": [{"field": "/kana_name/family", "message": "カタカナで"},
                           {"field": "/business_ids/1", "message": "搭載できません"},
                           {"field": "/custom_fields/school_district", "message": "選択してください"},
                           {"field": "/unknown", "message": "その他"}]}),
        );
        let errors = FieldErrors::of(&problem, &["kana_name.family", "business_ids", "custom_fields.school_district"]);
        assert_eq!(errors.of_field("kana_name.family"), ["カタカナで"]);
        assert_eq!(errors.of_field("business_ids"), ["搭載できません"]);
        assert_eq!(errors.of_field("custom_fields.school_district"), ["選択してください"]);
        assert_eq!(errors.general, ["2件", "その他"]);
    }
}
