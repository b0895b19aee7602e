//! Bytes -> `decode_text` -> `parse_str` as XML and as YAML. A sequence that parses is
//! validated and must survive both writers: `parse(write(m)) == m` for YAML and for XML.
//! Any panic, or a round trip that changes the model, is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use tsforge_runtime::engine::validate;
use tsforge_runtime::sequence::{decode_text, parse_str, xml, yaml, Format, Sequence};

#[path = "known.rs"]
mod known;

fn check(seq: &Sequence, file: &Path, from: Format) {
    // Validation resolves Run Task Sequence children relative to `file`: a path that does not
    // exist keeps it away from the real file system.
    let _ = validate::validate(seq, file, &validate::Context::default());

    let y = yaml::write(seq);
    match yaml::parse(&y, file) {
        Ok(back) => assert_eq!(&back, seq, "YAML round trip changed the model; YAML:\n{y}"),
        Err(e) => panic!("YAML writer output does not parse: {e}\nYAML:\n{y}"),
    }

    let x = xml::write(seq);
    if xml::parse("<sequence/>", file).is_err() {
        return; // XML reader not built yet (before it landed, it rejected everything)
    }
    if from == Format::Yaml && known::k3_k4_model(seq) {
        return;
    }
    match xml::parse(&x, file) {
        Ok(back) => assert_eq!(&back, seq, "XML round trip changed the model; XML:\n{x}"),
        Err(e) => panic!("XML writer output does not parse: {e}\nXML:\n{x}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let file = Path::new("/nonexistent-tsforge-fuzz/input");
    let Ok(text) = decode_text(data, file) else {
        return;
    };
    for format in [Format::Xml, Format::Yaml] {
        if let Ok(seq) = parse_str(&text, file, format) {
            check(&seq, file, format);
        }
    }
});
