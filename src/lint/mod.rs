//! Lints on the lowered objective, run once the checker has accepted a file: soft gates that carry gradient
//! (W0305) and the training direction probed on the f64 oracle (W0306); and `# allow(CODE): reason` comments,
//! which silence one warning code for their file (W0307 when one is malformed or silences nothing).

pub mod probe;
pub mod soft_gate;

use crate::check::{Checked, DataKind};
use crate::diag::{Code, Diagnostic, Label, Severity};
use crate::ir::{self, Bound, Node};
use crate::source::Span;

/// The lint warnings of an accepted program, with its parameters at their defaults.
pub fn lints(checked: &Checked) -> Vec<Diagnostic> {
    let Ok(bound) = ir::lower(checked).bind(&defaults(checked)) else { return Vec::new() };
    let mut out: Vec<Diagnostic> =
        soft_gate::soft_gates(&bound).into_iter().map(|g| soft_gate_diag(&bound, g)).collect();
    out.extend(probe_diag(&bound));
    out
}

fn defaults(checked: &Checked) -> Vec<(String, f64)> {
    checked.params.iter().map(|p| (p.name.clone(), p.default)).collect()
}

fn soft_gate_diag(obj: &Bound, g: soft_gate::SoftGate) -> Diagnostic {
    let (what, example) = match obj.node(g.squash) {
        Node::Unary(ir::UnOp::Sigmoid, _) => ("`sigmoid`", "sigmoid(stopgrad(k * gap))"),
        Node::Unary(ir::UnOp::Tanh, _) => ("`tanh`", "tanh(stopgrad(k * gap))"),
        Node::Clamp(..) => ("`clamp`", "clamp(stopgrad(k * gap), -1, 1)"),
        _ => ("a normalised quotient", "stopgrad(gap / abs(gap))"),
    };
    Diagnostic::error(
        Code::W0305,
        Label::new(obj.spans[g.squash.0 as usize], "soft gate of the policy–reference gap, with gradient"),
        format!("soft gate carries gradient: {what} of the policy–reference gap weights another term"),
    )
    .with_label(obj.spans[g.product.0 as usize], "weights this term")
    .with_note(
        "the weight's own gradient trains the gap: the policy is pushed to move the gate, not only the term it \
         weights (a hard gate — `sign`, `indicator`, `where` — with gradient is E0306)",
    )
    .with_help(format!(
        "compute the weight outside the tape: wrap the gate's argument in `stopgrad(...)`, e.g. `{example}`"
    ))
}

fn probe_diag(obj: &Bound) -> Option<Diagnostic> {
    let p = probe::probe(obj);
    let m = p.finite;
    let (preferred, dispreferred) = match obj.data {
        DataKind::Labelled => ("images labelled 1", "images labelled 0"),
        _ => ("winners", "losers"),
    };
    let mut findings = Vec::new();
    if p.independent() {
        findings.push(format!(
            "the loss does not depend on the policy: its gradient with respect to every policy error was 0 on all {m} probes"
        ));
    }
    if p.pushes_winners() {
        let k = p.winners_raise.unwrap_or(0);
        findings.push(format!("lowering the policy's error on {preferred} raised the loss on {k} of {m} probes"));
    }
    if p.pulls_losers() {
        let k = p.losers_lower.unwrap_or(0);
        findings.push(format!("lowering the policy's error on {dispreferred} lowered the loss on {k} of {m} probes"));
    }
    if findings.is_empty() {
        return None;
    }
    let message = match (p.independent(), p.pushes_winners(), p.pulls_losers()) {
        (true, _, _) => "the loss does not depend on the policy".to_string(),
        (_, true, true) => {
            format!("the loss trains in reverse: it pushes {preferred} away and pulls {dispreferred} in")
        }
        (_, true, false) => format!("the loss pushes the policy away from the {preferred}"),
        _ => format!("the loss pulls the policy towards the {dispreferred}"),
    };
    let label = findings.remove(0);
    let mut diag = Diagnostic::error(Code::W0306, Label::new(obj.spans[obj.loss.0 as usize], label), message);
    for f in findings {
        diag = diag.with_note(f);
    }
    let labels = match obj.data {
        DataKind::Pairs => "label 1",
        DataKind::Labelled => "labels 1 and 0 alternating",
        DataKind::Winners => "winners only (reference samples are not classified)",
    };
    let diag = diag
        .with_note(format!(
        "probed on the f64 oracle with {} random batches of {} (fixed seed): policy errors log-uniform in [{}, {}], \
         each reference's error within {}% of the policy's (equal on every {}th batch, as at the first update), \
         timesteps uniform in (0, 1), {labels}; parameters at their defaults",
        probe::PROBES,
        probe::BATCH,
        probe::ERR_RANGE.0,
        probe::ERR_RANGE.1,
        probe::REF_SPREAD * 100.0,
        probe::EQUAL_EVERY,
    ))
        .with_help(
            "check the loss's sign and the order of the models (`logratio(policy, ref, x)`); if this is intended, \
         say so with a comment `# allow(W0306): reason`",
        );
    Some(diag)
}

/// One `# allow(CODE): reason` comment.
struct Allow {
    code: Code,
    span: Span,
    used: bool,
}

/// Drops the warnings that an `# allow(CODE): reason` comment of `text` silences, and adds W0307 for each allow
/// comment that is malformed, names an error or an unknown code, or (when `accepted`, so that every lint ran)
/// silences nothing.
pub fn apply_allows(text: &str, diags: Vec<Diagnostic>, accepted: bool) -> Vec<Diagnostic> {
    let mut allows = Vec::new();
    let mut out = Vec::new();
    for c in crate::syntax::comments::scan(text) {
        let body = c.text.trim_start();
        let Some(rest) = body.strip_prefix("allow(") else { continue };
        let span = Span::new(c.at, c.end);
        match parse_allow(rest) {
            Ok(code) => allows.push(Allow { code, span, used: false }),
            Err(why) => out.push(
                Diagnostic::error(
                    Code::W0307,
                    Label::new(span, why.clone()),
                    format!("malformed allow comment: {why}"),
                )
                .with_help("write `# allow(W0306): why this is intended`, one warning code per comment"),
            ),
        }
    }
    for d in diags {
        match allows.iter_mut().find(|a| a.code == d.code) {
            Some(a) if d.severity == Severity::Warning => a.used = true,
            _ => out.push(d),
        }
    }
    if accepted {
        for a in allows.iter().filter(|a| !a.used) {
            out.push(
                Diagnostic::error(
                    Code::W0307,
                    Label::new(a.span, format!("no {} here", a.code)),
                    format!("`allow({})` silences nothing", a.code),
                )
                .with_help("remove the comment"),
            );
        }
    }
    out.sort_by_key(|d| (d.primary.span.start, d.code));
    out
}

/// `W0306): reason` (after `allow(`) to the code; a reason is required.
fn parse_allow(rest: &str) -> Result<Code, String> {
    let Some((code, after)) = rest.split_once(')') else { return Err("no closing `)`".to_string()) };
    let code = code.trim();
    let Some(found) = Code::ALL.iter().find(|c| c.as_str() == code) else {
        return Err(format!("`{code}` is not a diagnostic code"));
    };
    if found.severity() == Severity::Error {
        return Err(format!("{code} is an error; only warnings can be allowed"));
    }
    let reason = after.trim_start().strip_prefix(':').map(str::trim).unwrap_or("");
    if reason.is_empty() {
        return Err("no reason: write `: why` after the code".to_string());
    }
    Ok(*found)
}
