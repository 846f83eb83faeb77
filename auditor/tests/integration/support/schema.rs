//! The events' JSON Schema, for checking every event a test sees.

use serde_json::Value;

const SCHEMA: &str = include_str!("../../../../schema/events.schema.json");

/// Panics with the schema's complaints when `event` does not conform.
pub fn assert_valid_event(event: &Value) {
    let schema: Value = serde_json::from_str(SCHEMA).expect("the schema is JSON");
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("a valid schema");
    let errors: Vec<String> = validator
        .iter_errors(event)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{event}");
}

/// Parses JSON lines into events, each checked against the schema.
pub fn valid_events<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<Value> {
    lines
        .into_iter()
        .map(|line| {
            let event = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert_valid_event(&event);
            event
        })
        .collect()
}
