//! Configuration files, parsed and validated as `auditor check-config` does;
//! a valid one is then put to use as `auditor replay --config` and a SIGHUP
//! reload do.

#![no_main]

use std::{collections::HashMap, io};

use auditor::{
    config::{Config, ConfigError},
    output::{Format, LineWriter},
    pipeline::{Output, Pipeline},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    match Config::parse(text, "fuzz.toml") {
        Ok(config) => {
            config
                .validate("fuzz.toml")
                .expect("a configuration that parses is valid");
            let mut pipeline = Pipeline::configured(
                &config,
                Output::Events,
                HashMap::new(),
                LineWriter::new(io::sink(), Format::Json),
            );
            pipeline
                .replace_report_settings(config.report_settings(HashMap::new()))
                .expect("writing to io::sink cannot fail");
        }
        Err(ConfigError::Invalid { problems, .. }) => {
            // A problem's line is one of the text's (or the line after its
            // last line break, where an unfinished last line ends).
            let lines = text.split('\n').count();
            for problem in problems {
                if let Some(line) = problem.line {
                    assert!((1..=lines).contains(&line), "line {line} of {lines}");
                }
            }
        }
        Err(error @ ConfigError::Read { .. }) => panic!("parsing read a file: {error}"),
    }
});
