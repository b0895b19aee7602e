//! `runIn` (ConfigMgr's `SupportedEnvironment`: `WinPE`, `FullOS` or `WinPEandFullOS`, the
//! default): where a step may run, enforced when the step is reached, and the orders
//! `tsforge validate` warns about.
//!
//! Microsoft documents the values (SMS_TaskSequence_Action server WMI class,
//! <https://learn.microsoft.com/en-us/mem/configmgr/develop/reference/osd/sms_tasksequence_action-server-wmi-class>)
//! but not what happens on a mismatch. tsforge's choice (docs/engine.md, "runIn"):
//! - `FullOS` reached while `_SMSTSInWinPE` is `true`: the step fails, with a message naming
//!   the step, its runIn, where the run is and what to do; continue-on-error applies.
//! - `WinPE` reached after the run was handed over to the deployed OS (*Setup Windows and
//!   ConfigMgr*) and `_SMSTSInWinPE` is not `true`: the step fails the same way.
//! - `WinPE` reached outside the boot environment in a run that was never handed over (an
//!   administrator trying an exported sequence on their own machine): the step runs, and
//!   smsts.log says runIn was not enforced because this is not a deployment target.

use crate::sequence::model::{attr, step_type, Node, Pos, Step};
use crate::vars::Vars;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunIn {
    WinPE,
    FullOS,
    Both,
}

/// The accepted spellings, for messages.
pub const VALUES: &str = "WinPE, FullOS or WinPEandFullOS";

impl RunIn {
    /// A step's `runIn`: `None` for a value that is not one of [`VALUES`] (ASCII case ignored);
    /// no attribute is the default, `WinPEandFullOS`.
    pub fn of(step: &Step) -> Option<RunIn> {
        match attr(&step.attrs, "runIn").map(str::trim) {
            None | Some("") => Some(RunIn::Both),
            Some(v) if v.eq_ignore_ascii_case("WinPE") => Some(RunIn::WinPE),
            Some(v) if v.eq_ignore_ascii_case("FullOS") => Some(RunIn::FullOS),
            Some(v) if v.eq_ignore_ascii_case("WinPEandFullOS") => Some(RunIn::Both),
            Some(_) => None,
        }
    }
}

/// What the engine does with a step reached where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Run,
    /// Run it, logging why runIn was not enforced.
    NotEnforced(String),
    /// Fail the step with this message.
    Refuse(String),
}

/// Decide for `step`, with the run's variables and whether it was handed over.
pub fn check(step: &Step, vars: &Vars, handed_over: bool) -> Verdict {
    let name = step.name();
    let in_pe = vars
        .get("_SMSTSInWinPE")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    match RunIn::of(step) {
        None => Verdict::Refuse(format!(
            "step {name:?} has runIn={:?}, which is not {VALUES}",
            attr(&step.attrs, "runIn").unwrap_or_default()
        )),
        Some(RunIn::Both) => Verdict::Run,
        Some(RunIn::FullOS) if in_pe => Verdict::Refuse(format!(
            "step {name:?} has runIn FullOS (it runs only in the deployed operating system) but \
             the run is in the boot environment (_SMSTSInWinPE=true); hand the run over first \
             with a Setup Windows and ConfigMgr step, or set the step's runIn to WinPEandFullOS"
        )),
        Some(RunIn::FullOS) => Verdict::Run,
        Some(RunIn::WinPE) if in_pe => Verdict::Run,
        Some(RunIn::WinPE) if handed_over => Verdict::Refuse(format!(
            "step {name:?} has runIn WinPE (it runs only in the boot environment) but the run was \
             handed over to the deployed operating system (_SMSTSInWinPE=false); put a Restart \
             Computer step to the boot medium (SMSRebootTarget other than HD) before it, or set \
             the step's runIn to WinPEandFullOS"
        )),
        Some(RunIn::WinPE) => Verdict::NotEnforced(format!(
            "runIn WinPE of step {name:?} not enforced: _SMSTSInWinPE is false but the run was \
             never handed over to a deployed OS, so this is not a deployment target (a sequence \
             tried on an administrator's machine); the step runs"
        )),
    }
}

fn is_handover(s: &Step) -> bool {
    s.kind().is_some_and(|k| {
        k.eq_ignore_ascii_case(step_type::SETUP_WINDOWS_AND_SMS)
            || step_type::to_short(step_type::SETUP_WINDOWS_AND_SMS)
                .is_some_and(|short| k.eq_ignore_ascii_case(short))
    })
}

/// A *Restart Computer* step that boots the boot medium (`SMSRebootTarget` other than `HD`).
fn restarts_to_medium(s: &Step) -> bool {
    let reboot = s.kind().is_some_and(|k| {
        k.eq_ignore_ascii_case(step_type::REBOOT)
            || step_type::to_short(step_type::REBOOT).is_some_and(|sh| k.eq_ignore_ascii_case(sh))
    });
    reboot
        && s.property("SMSRebootTarget")
            .is_some_and(|t| !t.trim().is_empty() && !t.trim().eq_ignore_ascii_case("HD"))
}

/// Where the run is at a point of the sequence, as far as the order tells.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Where {
    /// The start: a sequence may start in the boot environment or in a full OS (ConfigMgr's
    /// refresh sequences capture user state in the old OS, then restart into Windows PE).
    Unknown,
    /// After a *Restart Computer* to the boot medium, or a `WinPE` step.
    BootEnv,
    /// After the hand-over step.
    HandedOver,
}

/// Orders that cannot work, in the sequence's own order (enabled steps of this file; child
/// sequences are not followed): a `FullOS` step after the run is known to be in the boot
/// environment (a *Restart Computer* to the boot medium or a `WinPE` step before it) and
/// before the hand-over step, and a `WinPE` step after a hand-over with no *Restart Computer*
/// to the boot medium between them. Only sequences with a hand-over step are checked.
pub fn order_warnings(items: &[Node]) -> Vec<(Pos, String)> {
    let mut steps = Vec::new();
    flatten(items, &mut steps);
    let mut out = Vec::new();
    let Some(first) = steps.iter().position(|s| is_handover(s)) else {
        return out;
    };
    let first = steps[first];
    let mut at = Where::Unknown;
    // The step that put the run in the boot environment, or the hand-over step.
    let mut because: Option<&Step> = None;
    for s in &steps {
        if is_handover(s) {
            at = Where::HandedOver;
            because = Some(s);
        } else if restarts_to_medium(s) {
            at = Where::BootEnv;
            because = Some(s);
        } else {
            match (RunIn::of(s), at) {
                (Some(RunIn::FullOS), Where::BootEnv) => out.push((
                    s.pos,
                    format!(
                        "step {:?} has runIn FullOS but comes after {:?} (line {}), which \
                         puts the run in the boot environment, and before the hand-over step \
                         {:?} (line {}): it will fail there",
                        s.name(),
                        because.map(|b| b.name()).unwrap_or_default(),
                        because.map(|b| b.pos.line).unwrap_or_default(),
                        first.name(),
                        first.pos.line
                    ),
                )),
                (Some(RunIn::WinPE), Where::HandedOver) => out.push((
                    s.pos,
                    format!(
                        "step {:?} has runIn WinPE but comes after the hand-over step {:?} \
                         (line {}) with no Restart Computer to the boot medium between them: \
                         the run is in the deployed OS there, so it will fail",
                        s.name(),
                        because.map(|b| b.name()).unwrap_or_default(),
                        because.map(|b| b.pos.line).unwrap_or_default(),
                    ),
                )),
                (Some(RunIn::WinPE), Where::Unknown) => {
                    at = Where::BootEnv;
                    because = Some(s);
                }
                _ => {}
            }
        }
    }
    out
}

fn flatten<'a>(items: &'a [Node], out: &mut Vec<&'a Step>) {
    for n in items {
        if n.disabled() {
            continue;
        }
        match n {
            Node::Step(s) => out.push(s),
            Node::Group(g) => flatten(&g.children, out),
        }
    }
}
