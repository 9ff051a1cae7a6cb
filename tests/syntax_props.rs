//! Properties of the front end: `parse(fmt(ast)) == ast` over generated programs, `fmt` is idempotent, and no
//! input (random bytes, mutated corpus files) makes parsing or checking panic.

use proptest::prelude::*;
use seppoc::frontend::frontend;
use seppoc::source::{SourceFile, Span};
use seppoc::syntax::{self, ast::*};

fn ident() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,6}".prop_filter("not a keyword", |s| !syntax::parser::KEYWORDS.contains(&s.as_str()))
}

fn id() -> impl Strategy<Value = Ident> {
    ident().prop_map(|name| Ident { name, span: Span::default() })
}

fn e(kind: ExprKind) -> Expr {
    Expr { kind, span: Span::default() }
}

fn expr() -> impl Strategy<Value = Expr> {
    let real = prop_oneof![0.0f64..1e6, prop::num::f64::POSITIVE.prop_filter("finite", |v| v.is_finite())];
    let leaf = prop_oneof![
        (0u64..1_000_000).prop_map(|v| e(ExprKind::Int(v))),
        any::<u64>().prop_map(|v| e(ExprKind::Int(v))),
        real.prop_map(|v| e(ExprKind::Real(v))),
        ident().prop_map(|n| e(ExprKind::Name(n))),
    ];
    let ops = prop::sample::select(vec![
        BinOp::Add,
        BinOp::Sub,
        BinOp::Mul,
        BinOp::Div,
        BinOp::Lt,
        BinOp::Le,
        BinOp::Gt,
        BinOp::Ge,
        BinOp::Eq,
        BinOp::Ne,
    ]);
    leaf.prop_recursive(5, 48, 4, move |inner| {
        prop_oneof![
            inner.clone().prop_map(|x| e(ExprKind::Neg(Box::new(x)))),
            (ops.clone(), inner.clone(), inner.clone()).prop_map(|(op, a, b)| e(ExprKind::Binary(
                op,
                Box::new(a),
                Box::new(b)
            ))),
            (id(), prop::collection::vec((prop::option::of(id()), inner), 0..4)).prop_map(|(f, args)| e(
                ExprKind::Call(f, args.into_iter().map(|(name, value)| Arg { name, value }).collect())
            )),
        ]
    })
}

fn named_args() -> impl Strategy<Value = Vec<Arg>> {
    prop::collection::vec((id(), expr()), 1..3)
        .prop_map(|v| v.into_iter().map(|(n, value)| Arg { name: Some(n), value }).collect())
}

fn stmt_kind() -> impl Strategy<Value = StmtKind> {
    let interval = (any::<bool>(), expr(), expr(), any::<bool>()).prop_map(|(lo_closed, lo, hi, hi_closed)| Interval {
        lo_closed,
        lo,
        hi,
        hi_closed,
        span: Span::default(),
    });
    let call_args = prop::collection::vec((prop::option::of(id()), expr()), 0..3)
        .prop_map(|v| v.into_iter().map(|(name, value)| Arg { name, value }).collect::<Vec<_>>());
    prop_oneof![
        id().prop_map(StmtKind::Objective),
        id().prop_map(StmtKind::Data),
        id().prop_map(StmtKind::Noise),
        named_args().prop_map(StmtKind::Pool),
        (id(), id(), expr(), prop::option::of(interval)).prop_map(|(name, ty, default, domain)| StmtKind::Param {
            name,
            ty,
            default,
            domain
        }),
        (id(), id(), prop::option::of(call_args)).prop_map(|(name, strategy, args)| StmtKind::Reference {
            name,
            strategy,
            args
        }),
        (id(), expr()).prop_map(|(n, x)| StmtKind::Let(n, x)),
        (id(), expr()).prop_map(|(n, x)| StmtKind::Log(n, x)),
        expr().prop_map(StmtKind::Loss),
    ]
}

fn comment() -> impl Strategy<Value = String> {
    "[ a-zA-Z0-9#.,()=-]{0,24}".prop_map(|s| s.trim_end().to_string())
}

fn file() -> impl Strategy<Value = File> {
    let stmt = (stmt_kind(), prop::collection::vec(comment(), 0..3), prop::option::of(comment()), any::<bool>())
        .prop_map(|(kind, leading_comments, trailing_comment, blank_line_before)| Stmt {
            kind,
            span: Span::default(),
            leading_comments,
            trailing_comment,
            blank_line_before,
        });
    (prop::collection::vec(stmt, 0..8), prop::collection::vec(comment(), 0..3)).prop_map(
        |(mut stmts, trailing_comments)| {
            if let Some(first) = stmts.first_mut() {
                first.blank_line_before = false;
            }
            File { stmts, trailing_comments }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn parse_of_format_is_identity(ast in file()) {
        let text = syntax::format(&ast);
        let (mut parsed, errors) = syntax::parse(&SourceFile::new("gen.obj", text.clone()));
        prop_assert!(errors.is_empty(), "canonical text does not parse:\n{}\n{:?}", text, errors);
        parsed.erase_spans();
        prop_assert_eq!(parsed, ast, "text:\n{}", text);
    }

    #[test]
    fn format_is_idempotent(ast in file()) {
        let once = syntax::format(&ast);
        let (parsed, _) = syntax::parse(&SourceFile::new("gen.obj", once.clone()));
        prop_assert_eq!(syntax::format(&parsed), once);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let (file, _) = SourceFile::from_bytes("fuzz.obj", &bytes);
        let _ = frontend(&file);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "[ -~\n\t]{0,400}") {
        let _ = frontend(&SourceFile::new("fuzz.obj", text));
    }

    #[test]
    fn mutated_corpus_never_panics(pick in 0usize..64, edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..4, "[()=,+*/<>#a-z0-9. \n-]{0,6}"), 1..6)) {
        let corpus = corpus();
        let mut text = corpus[pick % corpus.len()].clone().into_bytes();
        for (at, kind, insert) in edits {
            let at = at.index(text.len() + 1);
            match kind {
                0 => { text.splice(at..at, insert.bytes()); }
                1 => { let end = (at + insert.len() + 1).min(text.len()); text.drain(at..end); }
                2 => { let end = (at + 8).min(text.len()); let dup: Vec<u8> = text[at..end].to_vec(); text.splice(at..at, dup); }
                _ => { if at < text.len() { text[at] = insert.bytes().next().unwrap_or(b'('); } }
            }
        }
        let (file, _) = SourceFile::from_bytes("mutant.obj", &text);
        let _ = frontend(&file);
        let (ast, _) = syntax::parse(&file);
        let _ = syntax::format(&ast);
    }
}

fn corpus() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("objectives");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .expect("objectives/ exists")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect();
    out.sort();
    out
}

#[test]
fn deep_nesting_in_a_small_stack_is_a_diagnostic() {
    // 256 KiB is far below the 2 MiB test-thread default; the nesting limits must hold well inside it.
    let handle = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let deep = format!("objective t\nloss mean({}err(policy, winner){})", "(".repeat(5000), ")".repeat(5000));
            let minus = format!("objective t\nloss mean({}err(policy, winner))", "-".repeat(5000));
            let chain = format!("objective t\nloss mean(err(policy, winner){})", " + 1".repeat(100_000));
            [deep, minus, chain].map(|t| frontend(&SourceFile::new("deep.obj", t)).err().map(|d| d[0].code))
        })
        .expect("thread starts");
    let codes = handle.join().expect("no stack overflow or panic");
    for code in codes {
        assert_eq!(code, Some(seppoc::diag::Code::E0106));
    }
}
