//! Walks a JSON body field by field and collects every problem found, so a
//! client learns about all of them at once rather than one per round trip.

use serde_json::{Map, Value};

/// One problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// JSON path of the field, e.g. `lines[3].qty`.
    pub field: String,
    /// What is wrong, in words.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A JSON object being validated, with the problems found so far.
pub(crate) struct Body<'a> {
    map: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Body<'a> {
    /// Starts validating `value`, which must be an object with only `known` members.
    pub fn object(value: &'a Value, known: &[&str]) -> Result<Body<'a>, Vec<FieldError>> {
        let Some(map) = value.as_object() else {
            return Err(vec![FieldError::new("", "the body must be a JSON object")]);
        };
        let errors = map
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .map(|k| FieldError::new(k.as_str(), "is not a known field"))
            .collect();
        Ok(Body { map, errors })
    }

    /// The member `name`, `None` when absent or `null`.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    /// Whether `name` is present with the value `null`.
    pub fn is_null(&self, name: &str) -> bool {
        matches!(self.map.get(name), Some(Value::Null))
    }

    /// Records a problem.
    pub fn fail(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// An optional integer member within `min..=max`.
    pub fn int(&mut self, name: &str, min: i64, max: i64) -> Option<i64> {
        let value = self.get(name)?;
        match int_in(value, min, max) {
            Ok(n) => Some(n),
            Err(message) => {
                self.fail(name, message);
                None
            }
        }
    }

    /// An optional text member of 1 to `max` printable characters.
    pub fn text(&mut self, name: &str, max: usize) -> Option<String> {
        let value = self.get(name)?;
        match printable_text(value, max) {
            Ok(s) => Some(s),
            Err(message) => {
                self.fail(name, message);
                None
            }
        }
    }

    /// An optional boolean member.
    pub fn bool(&mut self, name: &str) -> Option<bool> {
        let value = self.get(name)?;
        match value.as_bool() {
            Some(b) => Some(b),
            None => {
                self.fail(name, "must be true or false");
                None
            }
        }
    }

    /// Ends validation: the problems found, if any.
    pub fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

/// An integer within `min..=max`.
pub(crate) fn int_in(value: &Value, min: i64, max: i64) -> Result<i64, String> {
    let out_of_range = || format!("must be an integer from {min} to {max}");
    // 2.0 is an integer in JSON Schema's eyes; accept it as one.
    let integral = value
        .as_f64()
        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
        .map(|f| f as i64);
    match value.as_i64().or(integral) {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        Some(_) => Err(out_of_range()),
        // Large or fractional numbers are numbers all the same: say the range.
        None if value.is_number() => Err(out_of_range()),
        None => Err(format!("must be an integer, not {}", kind(value))),
    }
}

/// Text of 1 to `max` printable characters.
pub(crate) fn printable_text(value: &Value, max: usize) -> Result<String, String> {
    let Some(s) = value.as_str() else {
        return Err(format!("must be a string, not {}", kind(value)));
    };
    let len = s.chars().count();
    if len == 0 || len > max {
        return Err(format!("must be 1 to {max} characters"));
    }
    if s.chars().any(char::is_control) {
        return Err("may only contain printable characters".into());
    }
    Ok(s.to_owned())
}

/// A JSON type's name, for messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_every_unknown_and_bad_field() {
        let body = json!({ "a": 1, "n": "x", "t": "" });
        let mut b = Body::object(&body, &["n", "t"]).unwrap();
        assert_eq!(b.int("n", 1, 5), None);
        assert_eq!(b.text("t", 5), None);
        let errors = b.finish().unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["a", "n", "t"]);
    }

    #[test]
    fn integers_outside_the_range_or_fractional_are_refused() {
        assert!(int_in(&json!(0), 1, 5).is_err());
        assert!(int_in(&json!(1.5), 1, 5).is_err());
        assert_eq!(int_in(&json!(2.0), 1, 5), Ok(2));
        assert!(int_in(&json!(1e30), 1, 5).is_err());
        assert_eq!(int_in(&json!(5), 1, 5), Ok(5));
    }

    #[test]
    fn control_characters_are_not_printable() {
        assert!(printable_text(&json!("a\u{7}"), 10).is_err());
        assert!(printable_text(&json!("ünïcode ok"), 10).is_ok());
    }
}
