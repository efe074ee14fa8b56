//! Graphviz DOT export of the graph behind a `Var`, drawn like torchviz: op nodes
//! (grey) with their output shapes, leaves requiring grad (blue) with theirs, the
//! output (green).

use std::collections::HashSet;
use std::fmt::Write;

use crate::graph::{Edge, NodePtr};
use crate::var::Var;

fn shape_str(dims: &[usize]) -> String {
    let v: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("({})", v.join(", "))
}

/// The DOT text for the graph that produced `v`.
pub(crate) fn to_dot(v: &Var) -> String {
    let mut s = String::from("digraph autograd {\n  node [style=filled, shape=box, fontname=monospace];\n");
    let out_id = "out";
    let _ = writeln!(
        s,
        "  {out_id} [label=\"output\\n{} {}\", fillcolor=darkolivegreen1];",
        shape_str(v.dims()),
        v.dtype()
    );
    let Some(root) = v.node() else {
        if v.requires_grad() {
            let _ =
                writeln!(s, "  leaf [label=\"leaf\\n{}\\nrequires_grad\", fillcolor=lightblue];", shape_str(v.dims()));
            let _ = writeln!(s, "  leaf -> {out_id};");
        }
        s.push_str("}\n");
        return s;
    };
    let _ = writeln!(s, "  n{} -> {out_id};", root.key());
    let mut seen: HashSet<usize> = HashSet::new();
    let mut stack: Vec<NodePtr> = vec![root.clone()];
    while let Some(n) = stack.pop() {
        if !seen.insert(n.key()) {
            continue;
        }
        let freed = if n.backward.is_freed() { "\\n(freed)" } else { "" };
        let _ = writeln!(
            s,
            "  n{} [label=\"{}\\n{}{freed}\", fillcolor=lightgrey];",
            n.key(),
            n.name,
            shape_str(n.shape.dims())
        );
        for e in n.edges.iter().flatten() {
            match e {
                Edge::Node(c) => {
                    let _ = writeln!(s, "  n{} -> n{};", c.key(), n.key());
                    stack.push(c.clone());
                }
                Edge::Leaf(w, shape, dtype) => {
                    let id = w.as_ptr() as usize;
                    if seen.insert(id) {
                        let _ = writeln!(
                            s,
                            "  l{id} [label=\"leaf\\n{} {dtype}\\nrequires_grad\", fillcolor=lightblue];",
                            shape_str(shape.dims())
                        );
                    }
                    let _ = writeln!(s, "  l{id} -> n{};", n.key());
                }
            }
        }
    }
    s.push_str("}\n");
    s
}
