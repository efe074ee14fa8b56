//! Fails when a public tensor op has no op-table record.

use std::collections::BTreeSet;

/// Public functions that are accessors, constructors of plumbing or helpers rather
/// than ops with numeric results to check.
const NOT_OPS: &[&str] = &[
    "reduce_op",
    "binary",
    "binary_scalar",
    "unary",
    "binary_",
    "broadcast_layout",
    "contiguous_layout",
    "apply_",
    "allclose",
    "equal",
    "uniform_with",
    "normal_with",
    "bernoulli_with",
    "cast",
    "check_fits",
];

fn ident(s: &str) -> String {
    s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

/// Names of `pub fn`s, plus the names a macro generates from arms like
/// `add, add_scalar => BinaryOp::Add;` or `neg => UnaryOp::Neg;` (the macro's own
/// `pub fn $name` line names nothing).
fn public_fns(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in src.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("pub fn ") {
            let name = ident(rest);
            if !name.is_empty() {
                out.push(name);
            }
        } else if let Some((names, rhs)) = t.split_once("=>") {
            let rhs = rhs.trim();
            let op_enum = ident(rhs);
            if op_enum.ends_with("Op") && rhs[op_enum.len()..].starts_with("::") && rhs.ends_with(';') {
                out.extend(names.split(',').map(|n| n.trim().to_string()).filter(|n| !n.is_empty()));
            }
        }
    }
    out
}

#[test]
fn every_public_op_has_a_record() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tensor-core/src");
    let mut files = vec![root.join("view.rs"), root.join("create.rs")];
    for e in std::fs::read_dir(root.join("ops")).expect("ops dir") {
        let p = e.expect("dir entry").path();
        if p.extension().is_some_and(|x| x == "rs") && p.file_name().is_some_and(|n| n != "mod.rs") {
            files.push(p);
        }
    }
    let mut names = BTreeSet::new();
    for f in files {
        let src = std::fs::read_to_string(&f).expect("source file");
        names.extend(public_fns(&src));
    }
    let mut covered = BTreeSet::new();
    for op in op_table::all_ops() {
        covered.insert(op.name.to_string());
        covered.extend(op.covers.iter().map(|s| s.to_string()));
    }
    let missing: Vec<_> =
        names.iter().filter(|n| !covered.contains(*n) && !NOT_OPS.contains(&n.as_str())).cloned().collect();
    assert!(missing.is_empty(), "public ops without an op-table record: {missing:?}");
}
