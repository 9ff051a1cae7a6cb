//! Syntax tree to checked program: resolves names and settings, infers types, and reports every bug class
//! of `docs/objectives.md` that can be seen before training (all of them at once, not just the first).

mod calls;
mod consts;
mod data;
mod draws;
mod expr;
mod online;
mod overrides;
pub mod program;
pub mod scope;
mod stmts;
pub mod types;

pub use consts::const_value;
pub use overrides::apply_overrides;
pub(crate) use overrides::domain_error;
pub use program::*;

use crate::diag::{Code, Diagnostic, Label};
use crate::source::Span;
use crate::syntax::ast;
use scope::Scope;
use types::Ty;

/// Checks a parsed file. On success the program carries its warnings; on failure every diagnostic is returned,
/// sorted by position.
pub fn check(file: &ast::File) -> Result<Checked, Vec<Diagnostic>> {
    let mut cx = Checker::new();
    for stmt in &file.stmts {
        cx.stmt(stmt);
    }
    cx.finish(file)
}

/// Checker state while walking the statements in order.
pub(crate) struct Checker {
    scope: Scope,
    diags: Vec<Diagnostic>,
    name: Option<(String, Span)>,
    data: Option<(DataKind, Span)>,
    /// A `data` statement named no known data set (already reported).
    data_invalid: bool,
    noise: Option<(Noise, Span)>,
    pool: Option<(Pool, Span)>,
    params: Vec<Param>,
    references: Vec<(Reference, Span)>,
    samples: Vec<SampleSpec>,
    bindings: Vec<(String, Ty)>,
    logs: Vec<(String, Ty)>,
    loss: Option<(Ty, Span)>,
    /// Uses of the data's images and fields (`winner`, `loser`, `image`, `label`, ...), checked against the
    /// data kind once the whole file is read.
    data_uses: Vec<(&'static str, Span)>,
    /// Spans of the `draws(...)` calls enclosing the expression being checked.
    draws_open: Vec<Span>,
    /// The expression being checked is a `log` line's (no gradient flows from it).
    in_log: bool,
    /// Group sizes, group statistics and rewards, checked once the whole file is read.
    online: online::OnlineUses,
}

impl Checker {
    fn new() -> Checker {
        Checker {
            scope: Scope::default(),
            diags: Vec::new(),
            name: None,
            data: None,
            data_invalid: false,
            noise: None,
            pool: None,
            params: Vec::new(),
            references: Vec::new(),
            samples: Vec::new(),
            bindings: Vec::new(),
            logs: Vec::new(),
            loss: None,
            data_uses: Vec::new(),
            draws_open: Vec::new(),
            in_log: false,
            online: online::OnlineUses::default(),
        }
    }

    fn report(&mut self, diag: Diagnostic) {
        self.diags.push(diag);
    }

    /// E0206 for a setting declared twice.
    fn duplicate(&mut self, what: &str, span: Span, prev: Span) {
        self.report(
            Diagnostic::error(
                Code::E0206,
                Label::new(span, "declared again here"),
                format!("`{what}` is declared twice"),
            )
            .with_label(prev, "first declared here"),
        );
    }

    fn finish(mut self, file: &ast::File) -> Result<Checked, Vec<Diagnostic>> {
        let end = file.stmts.last().map_or(Span::default(), |s| Span::new(s.span.end as usize, s.span.end as usize));
        if self.name.is_none() {
            self.report(
                Diagnostic::error(
                    Code::E0302,
                    Label::new(Span::default(), "expected `objective NAME` here"),
                    "missing objective header",
                )
                .with_help("start the file with `objective my_loss`"),
            );
        }
        let data = self.data.map_or(DataKind::Winners, |(d, _)| d);
        self.data_rules(data);
        self.online_rules();
        self.pool_needed();
        if self.loss.is_none() {
            self.report(
                Diagnostic::error(
                    Code::E0301,
                    Label::new(end, "expected `loss EXPR` by here"),
                    "objective has no `loss`",
                )
                .with_help("add `loss mean(err(policy, winner))` or another batch-reduced expression"),
            );
        }
        self.unused();
        let mut diags = std::mem::take(&mut self.diags);
        diags.sort_by_key(|d| (d.primary.span.start, d.code));
        if crate::diag::has_errors(&diags) {
            return Err(diags);
        }
        let (loss, _) = self.loss.unwrap_or((Ty::Error, end));
        Ok(Checked {
            name: self.name.map(|(n, _)| n).unwrap_or_default(),
            data,
            noise: self.noise.map_or(Noise::Shared, |(n, _)| n),
            pool: self.pool.map(|(p, _)| p),
            params: self.params,
            references: self.references.into_iter().map(|(r, _)| r).collect(),
            samples: self.samples,
            bindings: self.bindings,
            logs: self.logs,
            loss,
            file: file.clone(),
            warnings: diags,
        })
    }

    fn pool_needed(&mut self) {
        if self.pool.is_some() {
            return;
        }
        let needy: Vec<Span> = self
            .references
            .iter()
            .filter(|(r, _)| matches!(r.strategy, Strategy::Latest | Strategy::Uniform(_)))
            .map(|(_, s)| *s)
            .collect();
        for span in needy {
            self.report(
                Diagnostic::error(
                    Code::E0312,
                    Label::new(span, "chooses among pool checkpoints"),
                    "reference strategy needs a checkpoint pool",
                )
                .with_help("declare the pool, e.g. `pool every = 30, keep = 7` (the SePPO paper's setting)"),
            );
        }
    }

    fn unused(&mut self) {
        let unused: Vec<(String, Span, scope::BindingKind)> =
            self.scope.iter().filter(|(_, b)| !b.used).map(|(n, b)| (n.to_string(), b.span, b.kind)).collect();
        for (name, span, kind) in unused {
            let what = match kind {
                scope::BindingKind::Param => "parameter",
                scope::BindingKind::Reference => "reference",
                scope::BindingKind::Let => "binding",
            };
            self.report(
                Diagnostic::error(Code::W0301, Label::new(span, "never used"), format!("unused {what} `{name}`"))
                    .with_help("remove it, or use it in `loss` or a `log` line"),
            );
        }
    }
}
