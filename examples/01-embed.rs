//! Using seppoc from Rust: parse a shipped objective, inspect its checked program, then build the same
//! Diffusion-DPO objective with the typed builder and show that the checker sees the same program.
//!
//! Run: `cargo run --example 01-embed`

use seppoc::builder::{call, err, name, num, ObjectiveBuilder};
use seppoc::check::DataKind;
use seppoc::diag::{render, Style};
use seppoc::frontend::Objective;

fn main() {
    let text = std::fs::read_to_string("objectives/dpo.obj").expect("run from the repository root");
    let parsed = match Objective::parse("objectives/dpo.obj", &text) {
        Ok(obj) => obj,
        Err((file, diags)) => return eprint!("{}", render(&diags, &file, Style::Color)),
    };
    println!("== objectives/dpo.obj, checked ==\n{}", parsed.checked.dump());

    let d_w = err("policy", "winner") - err("ref", "winner");
    let d_l = err("policy", "loser") - err("ref", "loser");
    let built = ObjectiveBuilder::new("dpo")
        .data(DataKind::Pairs)
        .param("beta", 5000.0, 0.0, f64::INFINITY)
        .reference("ref", "initial")
        .bind("margin", num(-0.5) * name("beta") * (d_w - d_l))
        .log("implicit_acc", call("mean", [name("margin").cmp(seppoc::syntax::ast::BinOp::Gt, num(0.0))]))
        .loss(call("mean", [-call("logsigmoid", [name("margin")])]))
        .build();
    match built {
        Ok(obj) => {
            println!("== built in Rust, as .obj text ==\n{}", obj.canonical_text());
            println!("== built in Rust, checked ==\n{}", obj.checked.dump());
        }
        Err((file, diags)) => eprint!("{}", render(&diags, &file, Style::Color)),
    }

    // The checker rejects the classic bug just as it would in a file.
    let buggy = ObjectiveBuilder::new("bug")
        .loss(-call("logsigmoid", [num(-1.0) * call("mean", [err("policy", "winner")])]))
        .build();
    if let Err((file, diags)) = buggy {
        eprint!("{}", render(&diags, &file, Style::Plain));
    }
}
