//! The page as an administrator sees it, in headless Chromium (Debian's `chromium`, driven
//! through `chromedriver`): a running deployment's step advances without a reload, a failed one
//! shows its reason, the filters work, a deployment's page shows its steps and its smsts.log the
//! way CMTrace does (warnings and errors marked), and a runner's text is never markup. The
//! screenshots go to the test's target folder (their paths are printed).

use crate::common::browser::{self, Browser};
use crate::common::*;
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// A CMTrace line as smsts.log has it (`docs/engine.md`): type 1 info, 2 warning, 3 error.
fn cmtrace(message: &str, component: &str, ty: u8) -> String {
    format!(
        "<![LOG[{message}]LOG]!><time=\"10:00:0{ty}.000+000\" date=\"12-07-2026\" \
         component=\"{component}\" context=\"\" type=\"{ty}\" thread=\"42\" file=\"tsforge\">\n"
    )
}

fn js_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// `true` when the list's row for `run` shows `want` in the cell `selector`.
fn cell_is(run: &str, selector: &str, want: &str) -> String {
    format!(
        "const r = document.querySelector('tr[data-run={}]'); \
         const c = r && r.querySelector({}); return !!c && c.textContent.trim() === {};",
        js_str(run),
        js_str(selector),
        js_str(want)
    )
}

fn save_png(name: &str, png: &[u8]) {
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "not a screenshot"
    );
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
}

#[test]
fn the_page_shows_a_step_advancing_live_and_a_failure_with_its_reason() {
    if !browser::available() {
        eprintln!("SKIP: chromium and chromedriver are not installed (scripts/setup.sh)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(sqlite_config(dir.path()));
    let apply = "SMS_TaskSequence_ApplyOperatingSystemAction";
    let cmd = "SMS_TaskSequence_RunCommandLineAction";
    let (code, body) = post(
        &s,
        &batch(
            "run-a",
            "LAB-PC01",
            vec![
                ev(
                    "run-a",
                    1,
                    "run_start",
                    json!({"sequence": "Lab deploy", "steps": 3}),
                ),
                ev(
                    "run-a",
                    2,
                    "step_start",
                    json!({"number": 1, "name": "Partition disk 0", "type": cmd}),
                ),
            ],
        ),
    );
    assert_eq!(code, 200, "{body}");

    let b = Browser::start();
    b.goto(&s.url("/"));
    b.wait_for(
        &cell_is("run-a", ".step-count", "1 of 3"),
        "step 1 of 3",
        WAIT,
    );
    b.wait_for(
        &cell_is("run-a", ".step-name", "Partition disk 0"),
        "the step's name",
        WAIT,
    );
    b.wait_for(
        "return document.getElementById('live').textContent === 'live'",
        "the live stream",
        WAIT,
    );
    // A mark in this page load: a reload would lose it.
    b.eval("window.__sameLoad = 42; return true");

    // The runner goes on while the page is open: step 2, 40 % into it.
    let (code, body) = post(
        &s,
        &batch(
            "run-a",
            "LAB-PC01",
            vec![
                ev(
                    "run-a",
                    3,
                    "step_end",
                    json!({"number": 1, "name": "Partition disk 0", "type": cmd,
                    "exit_code": 0, "succeeded": true, "attempts": 1, "seconds": 2.0}),
                ),
                ev(
                    "run-a",
                    4,
                    "step_start",
                    json!({"number": 2, "name": "Apply operating system", "type": apply}),
                ),
                ev(
                    "run-a",
                    5,
                    "step_progress",
                    json!({"number": 2, "percent": 40, "message": "applying"}),
                ),
            ],
        ),
    );
    assert_eq!(code, 200, "{body}");
    b.wait_for(
        &cell_is("run-a", ".step-count", "2 of 3"),
        "step 2 of 3 without a reload",
        WAIT,
    );
    b.wait_for(
        &cell_is("run-a", ".step-name", "Apply operating system"),
        "step 2's name",
        WAIT,
    );
    b.wait_for(
        &cell_is("run-a", ".percent", "40% of this step"),
        "the step's progress",
        WAIT,
    );
    assert_eq!(
        b.eval("return window.__sameLoad"),
        json!(42),
        "the page was reloaded"
    );
    // The bar: one step done and 40 % of the second, of three.
    let width = b.eval("return document.querySelector('tr[data-run=\"run-a\"] .fill').style.width");
    assert_eq!(width, json!("46.7%"));

    // Another machine fails; a third has a name that looks like markup.
    let mut failing = full_run("run-b", 3, Some(2));
    let end = failing.pop().unwrap();
    failing.push(ev(
        "run-b",
        90,
        "failure",
        json!({"name": "Step 2", "number": 2, "exit_code": 5,
        "message": "Access is denied."}),
    ));
    let mut end = end;
    end["key"] = json!("run-b:91");
    failing.push(end);
    let (code, body) = post(&s, &batch("run-b", "LAB-PC02", failing));
    assert_eq!(code, 200, "{body}");
    let evil = "<img src=x onerror=\"window.__xss=1\">";
    let (code, body) = post(
        &s,
        &batch(
            "run-c",
            evil,
            vec![ev(
                "run-c",
                1,
                "run_start",
                json!({"sequence": "Lab deploy", "steps": 3}),
            )],
        ),
    );
    assert_eq!(code, 200, "{body}");
    b.wait_for(
        &cell_is("run-b", ".state", "failed"),
        "the failed deployment",
        WAIT,
    );
    let reason =
        b.eval("return document.querySelector('tr[data-run=\"run-b\"] .failure').textContent");
    let reason = reason.as_str().unwrap_or("");
    assert!(
        reason.contains("Step 2")
            && reason.contains("exit code 5")
            && reason.contains("Access is denied."),
        "{reason}"
    );
    b.wait_for(
        &cell_is("run-c", ".machine", evil),
        "the name shown as text",
        WAIT,
    );
    assert_eq!(b.eval("return window.__xss === undefined"), json!(true));
    assert_eq!(
        b.eval("return window.__sameLoad"),
        json!(42),
        "the page was reloaded"
    );
    save_png("monitor-page.png", &b.screenshot());

    // The state filter: only the failed one.
    b.eval(
        "const s = document.getElementById('state'); s.value = 'failed'; \
         s.dispatchEvent(new Event('change')); return true",
    );
    b.wait_for(
        "const rows = [...document.querySelectorAll('#deployments tbody tr')]; \
         return rows.length === 1 && rows[0].dataset.run === 'run-b';",
        "only the failed deployment",
        WAIT,
    );

    // Its page: the steps, and smsts.log with its warning and error marked.
    let log = [
        cmtrace("Start executing step 2 of 3: \"Step 2\"", "TSManager", 1),
        cmtrace("The share did not answer; retrying", "ApplyOS", 2),
        cmtrace(
            "Step \"Step 2\" failed (exit code 5): Access is denied.",
            "TSManager",
            3,
        ),
    ]
    .concat();
    let (code, body) = send(
        &agent(),
        "PUT",
        &s.url("/api/v1/runs/run-b/log"),
        &[("Content-Type", "text/plain")],
        Some(log.as_bytes()),
    );
    assert!(code == 204 || code == 200, "{code} {body}");
    b.goto(&s.url("/deployments/run-b"));
    b.wait_for(
        "return document.querySelectorAll('#log tbody tr').length === 3",
        "the log's three entries",
        WAIT,
    );
    let marks =
        b.eval("return [...document.querySelectorAll('#log tbody tr')].map(r => r.className)");
    assert_eq!(marks, json!(["info", "warning", "error"]));
    let color = b.eval(
        "return getComputedStyle(document.querySelector('#log tr.error td')).backgroundColor",
    );
    assert_ne!(
        color,
        json!("rgba(0, 0, 0, 0)"),
        "errors are not highlighted"
    );
    b.wait_for(
        "const r = [...document.querySelectorAll('#steps tbody tr')]; \
         return r.length === 2 && r[1].className.includes('failed') && r[1].textContent.includes('5');",
        "the step timeline with the failed step",
        WAIT,
    );
    let title = b.eval("return document.getElementById('title').textContent");
    assert_eq!(title, json!("LAB-PC02"));
    save_png("monitor-deployment.png", &b.screenshot());
}
