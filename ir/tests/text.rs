//! The text form: printer snapshots, parser errors with positions, round trips and fuzzing; and
//! the random graph generator of `kiln_ir::testing` that the round trips rely on.

use kiln_ir::testing::{
    arb_graph, arb_mutated_text, arb_text_noise, build_graph_checked, sample_every_op, sample_linear,
    sample_square_exp, GraphConfig, OpFamilies,
};
use kiln_ir::{parse, DType, Error, Graph, Literal, Op};
use proptest::prelude::*;

// ----- printer snapshots -------------------------------------------------------------------------

#[test]
fn snapshot_linear() {
    insta::assert_snapshot!(sample_linear().to_text());
}

#[test]
fn snapshot_square_exp() {
    insta::assert_snapshot!(sample_square_exp().to_text());
}

#[test]
fn snapshot_every_op() {
    insta::assert_snapshot!(sample_every_op().to_text());
}

#[test]
fn brief_example_prints_as_documented() {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [3, 4]);
    let w = g.param("w", DType::F32, [4]);
    g.constant(Literal::F32(vec![2.0]), []).unwrap();
    let m = g.mul(x, w).unwrap();
    let s = g.reduce(kiln_ir::ReduceOp::Sum, m, vec![1], false).unwrap();
    let t = g.transpose(m, vec![1, 0]).unwrap();
    g.set_outputs(vec![s, t]);
    let expected = "\
%0 = Input() {name=\"x\"} : f32[3,4]
%1 = Input() {name=\"w\", param=true} : f32[4]
%2 = Constant() {value=[2.0]} : f32[]
%3 = Mul(%0, %1) : f32[3,4]
%4 = ReduceSum(%3) {axes=[1], keepdims=false} : f32[3]
%5 = Transpose(%3) {perm=[1,0]} : f32[4,3]
return %4, %5
";
    assert_eq!(g.to_text(), expected);
    assert_eq!(g.to_string(), expected);
    assert_eq!(parse(expected).unwrap().to_text(), expected);
}

#[test]
fn numbering_follows_topo_order_not_insertion_order() {
    let mut g = Graph::new();
    let c = g.scalar(DType::F32, 1.0);
    let x = g.input("x", DType::F32, [2]);
    let y = g.add_(x, c).unwrap();
    g.set_outputs(vec![y]);
    assert_eq!(
        g.to_text(),
        "%0 = Input() {name=\"x\"} : f32[2]\n%1 = Constant() {value=[1.0]} : f32[]\n%2 = Add(%0, %1) : f32[2]\nreturn %2\n"
    );
}

#[test]
fn empty_graph_and_no_outputs() {
    assert_eq!(Graph::new().to_text(), "return\n");
    let g = parse("return").unwrap();
    assert!(g.is_empty() && g.outputs().is_empty());
    let g = parse("%a = Input() {name=\"a\"} : bool[]\nreturn").unwrap();
    assert_eq!(g.to_text(), "%0 = Input() {name=\"a\"} : bool[]\nreturn\n");
}

#[test]
fn strings_and_special_floats_round_trip() {
    let mut g = Graph::new();
    let name = "a \"quoted\"\\ name\n\twith\u{7}bell é ∑";
    let x = g.input(name, DType::F32, [6]);
    let vals = vec![f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -0.0, 1e-45, f32::MAX];
    let c = g.constant(Literal::F32(vals.clone()), [6]).unwrap();
    let d = g.constant(Literal::F64(vec![0.1, 1.0 / 3.0, 5e-324, -1e300]), [4]).unwrap();
    let i = g.constant(Literal::I64(vec![i64::MIN, i64::MAX, 0]), [3]).unwrap();
    let y = g.add_(x, c).unwrap();
    g.set_outputs(vec![y, d, i]);
    let text = g.to_text();
    assert!(text.contains(r#"{name="a \"quoted\"\\ name\n\twith\u{7}bell é ∑"}"#), "{text}");
    assert!(text.contains("value=[inf,-inf,NaN,-0.0,1e-45,3.4028235e38]"), "{text}");
    assert!(text.contains("value=[0.1,0.3333333333333333,5e-324,-1e300]"), "{text}");
    assert!(text.contains("value=[-9223372036854775808,9223372036854775807,0]"), "{text}");
    let back = parse(&text).unwrap();
    assert_eq!(back.to_text(), text);
    assert_eq!(back.input_name(back.inputs()[0]), Some(name));
    let ops = back.operands(back.outputs()[0]);
    let Op::Constant(Literal::F32(read)) = &back.node(ops[1]).op else { panic!("no f32 constant") };
    let bits = |v: &[f32]| v.iter().map(|x| if x.is_nan() { 0 } else { x.to_bits() }).collect::<Vec<_>>();
    assert_eq!(bits(read), bits(&vals));
    assert!(read[2].is_nan());
}

// ----- parser: accepted inputs -------------------------------------------------------------------

#[test]
fn parser_accepts_free_form_ids_comments_and_attribute_order() {
    let src = r#"
# a comment line

    %in_x = Input() { param = true , name = "x" } : f32[ 2 , 3 ]   # trailing comment
%k = Constant() {value=[1, 2.5, -inf]} : f64[3]
%sum = ReduceSum(%in_x) {keepdims=true, axes=[-1]} : f32[2,1]
%s2 = Slice(%in_x) {steps=[-1], axes=[1], ends=[-9223372036854775808], starts=[-1]} : f32[2,3]
return %sum,%s2
"#;
    let g = parse(src).unwrap();
    g.verify().unwrap();
    assert_eq!(
        g.to_text(),
        "\
%0 = Input() {name=\"x\", param=true} : f32[2,3]
%1 = Constant() {value=[1.0,2.5,-inf]} : f64[3]
%2 = ReduceSum(%0) {axes=[-1], keepdims=true} : f32[2,1]
%3 = Slice(%0) {starts=[-1], ends=[-9223372036854775808], axes=[1], steps=[-1]} : f32[2,3]
return %2, %3
"
    );
    // FromStr and CRLF line ends.
    let g2: Graph = src.replace('\n', "\r\n").parse().unwrap();
    assert_eq!(g2.to_text(), g.to_text());
}

#[test]
fn extreme_slice_steps_and_bounds_are_accepted() {
    let src = format!(
        "{X}%1 = Slice(%0) {{starts=[2], ends=[-9223372036854775808], axes=[0], steps=[-9223372036854775808]}} : f32[1]\n\
         %2 = Slice(%0) {{starts=[-9223372036854775808], ends=[9223372036854775807], axes=[-1], steps=[9223372036854775807]}} : f32[1]\n\
         %3 = Slice(%0) {{starts=[0], ends=[3], axes=[0], steps=[-9223372036854775808]}} : f32[0]\n\
         return %1, %2, %3"
    );
    let g = parse(&src).unwrap();
    g.verify().unwrap();
    assert_eq!(parse(&g.to_text()).unwrap().to_text(), g.to_text());
}

#[test]
fn input_order_is_the_order_of_input_lines() {
    let src = "%b = Input() {name=\"b\"} : f32[]\n%c = Constant() {value=[1.0]} : f32[]\n\
               %a = Input() {name=\"a\"} : f32[]\n%s = Sub(%a, %b) : f32[]\nreturn %s";
    let g = parse(src).unwrap();
    let names: Vec<_> = g.inputs().iter().map(|&i| g.input_name(i).unwrap()).collect();
    assert_eq!(names, ["b", "a"]);
    assert!(g.to_text().starts_with("%0 = Input() {name=\"b\"} : f32[]\n%1 = Input() {name=\"a\"}"));
}

// ----- parser errors -----------------------------------------------------------------------------

const X: &str = "%0 = Input() {name=\"x\"} : f32[3]\n";

fn err(src: &str) -> String {
    match parse(src) {
        Ok(g) => panic!("parsed, expected an error:\n{}", g.to_text()),
        Err(e @ Error::Parse { .. }) => e.to_string(),
        Err(e) => panic!("not a parse error: {e:?}"),
    }
}

#[test]
fn parse_errors_name_line_column_and_expectation() {
    let cases: &[(String, &str)] = &[
        (format!("{X}%1 = Mull(%0, %0) : f32[3]\nreturn %1"), "2:6: unknown op 'Mull'"),
        (format!("{X}%1 = Mul(%0, %7) : f32[3]\nreturn %1"), "2:14: %7 is used before it is defined"),
        (format!("{X}%1 = Neg(%1) : f32[3]\nreturn %1"), "2:10: %1 is used before it is defined"),
        (
            format!("{X}%1 = Input() {{name=\"y\"}} : f32[4]\n%2 = Mul(%0, %1) : f32[3]\nreturn %2"),
            "3:1: Mul: shapes [3] and [4] cannot be broadcast together (declared f32[3])",
        ),
        (
            format!("{X}%1 = Mul(%0, %0) : f32[4]\nreturn %1"),
            "2:20: Mul: the operands give f32[3], but the line declares f32[4]",
        ),
        (
            format!("{X}%1 = Cast(%0) {{to=f64}} : f32[3]\nreturn %1"),
            "2:26: Cast: the operands give f64[3], but the line declares f32[3]",
        ),
        (
            format!("{X}%1 = Mul(%0 %0) : f32[3]\nreturn %1"),
            "2:13: expected ',' or ')' after an operand, found '%0'",
        ),
        (format!("{X}%1 = Mul(%0,) : f32[3]\nreturn %1"), "2:13: expected an operand like '%0', found ')'"),
        (format!("{X}%1 = Mul %0 : f32[3]\nreturn %1"), "2:10: expected '(' after the op name, found '%0'"),
        (format!("{X}%1 Neg(%0) : f32[3]\nreturn %1"), "2:4: expected '=' after %1, found 'Neg'"),
        (
            format!("{X}%1 = Neg(%0) f32[3]\nreturn %1"),
            "2:14: expected '{' or ':' after the operands, found 'f32'",
        ),
        (
            format!("{X}%1 = Neg(%0) : f32[3] extra\nreturn %1"),
            "2:23: expected end of line after the result type, found 'extra'",
        ),
        (
            format!("{X}%1 = Neg(%0) : f16[3]\nreturn %1"),
            "2:16: unknown dtype 'f16' (expected f32, f64, i64 or bool)",
        ),
        (
            format!("{X}%1 = Neg(%0) : f32 [3\nreturn %1"),
            "2:22: expected ',' or ']' in a shape, found end of line",
        ),
        (
            format!("{X}%1 = Neg(%0) : f32\nreturn %1"),
            "2:19: expected '[' after the dtype (a scalar is written f32[]), found end of line",
        ),
        (format!("{X}%0 = Neg(%0) : f32[3]\nreturn %0"), "2:1: %0 is defined twice (first on line 1)"),
        (
            format!("{X}Neg(%0)\nreturn"),
            "2:1: expected a node definition like '%0 = ...' or 'return', found 'Neg'",
        ),
        (format!("{X}%1 = 3"), "2:6: expected an op name after '=', found '3'"),
        (X.to_string(), "2:1: expected a 'return' line at the end of the input"),
        (String::new(), "1:1: expected a 'return' line at the end of the input"),
        (
            format!("{X}return %0\n\n# fine\n%1 = Neg(%0) : f32[3]"),
            "5:1: expected nothing after the 'return' line (line 2), found '%1'",
        ),
        (format!("{X}return %0 %0"), "2:11: expected ',' or end of line after an output, found '%0'"),
        (format!("{X}return %9"), "2:8: %9 is used before it is defined"),
        (format!("{X}return 0"), "2:8: expected an output like '%0', found '0'"),
        // Attributes.
        (
            format!("{X}%1 = ReduceSum(%0) {{axes=[0]}} : f32[]\nreturn %1"),
            "2:6: ReduceSum: missing attribute 'keepdims'",
        ),
        (
            format!("{X}%1 = ReduceSum(%0) {{axis=[0], keepdims=false}} : f32[]\nreturn %1"),
            "2:21: unknown attribute 'axis' for ReduceSum (expected axes, keepdims)",
        ),
        (
            format!("{X}%1 = Neg(%0) {{x=1}} : f32[3]\nreturn %1"),
            "2:15: unknown attribute 'x' for Neg (Neg takes none)",
        ),
        (
            format!("{X}%1 = Concat(%0) {{axis=0, axis=0}} : f32[3]\nreturn %1"),
            "2:26: attribute 'axis' is given twice",
        ),
        (
            format!("{X}%1 = Concat(%0) {{axis=[0]}} : f32[3]\nreturn %1"),
            "2:18: attribute 'axis' expects a single value, found a list",
        ),
        (
            format!("{X}%1 = Concat(%0) {{axis=x}} : f32[3]\nreturn %1"),
            "2:23: expected an integer, found 'x'",
        ),
        (
            format!("{X}%1 = Reshape(%0) {{shape=[-3]}} : f32[3]\nreturn %1"),
            "2:26: expected a non-negative integer, found '-3'",
        ),
        (
            format!("{X}%1 = Reshape(%0) {{shape=3}} : f32[3]\nreturn %1"),
            "2:19: attribute 'shape' expects a list, found '3'",
        ),
        (
            format!("{X}%1 = Reshape(%0) {{shape=[3,]}} : f32[3]\nreturn %1"),
            "2:28: expected a list element, found ']'",
        ),
        (
            format!("{X}%1 = Reshape(%0) {{shape=[3] : f32[3]\nreturn %1"),
            "2:29: expected ',' or '}' after an attribute, found ':'",
        ),
        (
            format!("{X}%1 = ReduceSum(%0) {{axes=[0], keepdims=1}} : f32[]\nreturn %1"),
            "2:40: attribute 'keepdims' expects true or false, found '1'",
        ),
        (
            format!("{X}%1 = Cast(%0) {{to=f16}} : f32[3]\nreturn %1"),
            "2:19: attribute 'to' expects a dtype (f32, f64, i64 or bool), found 'f16'",
        ),
        (
            format!("{X}%1 = Concat(%0) {{axis=99999999999999999999}} : f32[3]\nreturn %1"),
            "2:23: integer '99999999999999999999' is out of range for i64",
        ),
        // Input and Constant.
        ("%0 = Input() : f32[3]\nreturn".to_string(), "1:6: Input: missing attribute 'name'"),
        (
            "%0 = Input() {name=x} : f32[3]\nreturn".to_string(),
            "1:15: attribute 'name' expects a string, found 'x'",
        ),
        (
            format!("{X}%1 = Input(%0) {{name=\"y\"}} : f32[3]\nreturn"),
            "2:6: Input takes no operands, found 1",
        ),
        (
            "%0 = Input() {name=\"x\", param=yes} : f32[3]\nreturn".to_string(),
            "1:31: attribute 'param' expects true or false, found 'yes'",
        ),
        (
            "%0 = Constant() {value=[1.0, 2.0]} : f32[3]\nreturn".to_string(),
            "1:24: Constant: 2 values given for shape [3] (3 elements)",
        ),
        (
            "%0 = Constant() {value=[1.5]} : i64[]\nreturn".to_string(),
            "1:25: expected an i64 value, found '1.5'",
        ),
        (
            "%0 = Constant() {value=[true, 1]} : bool[2]\nreturn".to_string(),
            "1:31: expected a bool value, found '1'",
        ),
        (
            "%0 = Constant() {value=[true]} : f32[]\nreturn".to_string(),
            "1:25: expected an f32 value, found 'true'",
        ),
        (
            "%0 = Constant() {value=[1x]} : f64[]\nreturn".to_string(),
            "1:25: expected an f64 value, found '1x'",
        ),
        // Lexical errors.
        ("%0 = Input() {name=\"x} : f32[3]\nreturn".to_string(), "1:20: unterminated string"),
        ("%0 = Input() {name=\"\\q\"} : f32[3]\nreturn".to_string(), "1:21: invalid escape '\\q' in string"),
        (
            "%0 = Input() {name=\"\\u{d800}\"} : f32[3]\nreturn".to_string(),
            "1:21: invalid unicode escape (expected \\u{XXXX})",
        ),
        (
            "% = Input() {name=\"x\"} : f32[3]\nreturn".to_string(),
            "1:1: expected a node name after '%', found ' '",
        ),
        ("%0 = Input() @ : f32[3]\nreturn".to_string(), "1:14: unexpected character '@'"),
        ("%0 = Constant() {value=[-]} : f32[1]\nreturn".to_string(), "1:25: expected a number after '-'"),
        // Limits that keep shape arithmetic from overflowing.
        (
            "%0 = Input() {name=\"x\"} : f32[4294967296,4294967296]\nreturn".to_string(),
            "1:27: shape [4294967296,4294967296] has more than 2^53 elements",
        ),
        (
            "%0 = Input() {name=\"x\"} : f32[18446744073709551616]\nreturn".to_string(),
            "1:31: integer '18446744073709551616' is too large",
        ),
        (
            format!("{X}%1 = Expand(%0) {{shape=[9007199254740993,3]}} : f32[1]\nreturn %1"),
            "2:1: Expand: extent 9007199254740993 is larger than the supported maximum 2^53",
        ),
        // Inference errors from other ops.
        (
            format!("{X}%1 = Where(%0, %0, %0) : f32[3]\nreturn %1"),
            "2:1: Where: condition must be bool, got f32 (declared f32[3])",
        ),
        (
            format!("{X}%1 = Mul(%0) : f32[3]\nreturn %1"),
            "2:1: Mul: expects 2 operand(s), got 1 (declared f32[3])",
        ),
        (
            format!("{X}%1 = Reshape(%0) {{shape=[2,2]}} : f32[2,2]\nreturn %1"),
            "2:1: Reshape: shape '[2, 2]' is invalid for input of size 3 (shape [3]) (declared f32[2,2])",
        ),
    ];
    let mut wrong = Vec::new();
    for (src, want) in cases {
        let got = err(src);
        if got != *want {
            wrong.push(format!("input:\n{src}\n  got:  {got}\n  want: {want}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn line_numbers_count_blank_and_comment_lines() {
    let src = format!("# header\n\n{X}   \n%1 = Mull(%0) : f32[3]\nreturn %1");
    assert_eq!(err(&src), "5:6: unknown op 'Mull'");
}

#[test]
fn parse_errors_are_parse_variants_with_fields() {
    let e = parse(&format!("{X}%1 = Mull(%0) : f32[3]\nreturn %1")).unwrap_err();
    assert_eq!(e, Error::Parse { line: 2, col: 6, msg: "unknown op 'Mull'".into() });
}

// ----- generator --------------------------------------------------------------------------------

fn configs() -> Vec<GraphConfig> {
    vec![
        GraphConfig::default(),
        GraphConfig::exhaustive(),
        GraphConfig::smooth(),
        GraphConfig { max_nodes: 30, ..GraphConfig::default() },
        GraphConfig::default().with_families(OpFamilies::ELEMENTWISE),
        GraphConfig::default().with_families(OpFamilies::MOVEMENT),
        GraphConfig::default().with_families(OpFamilies::FUSION).with_dtypes(&[DType::F32]),
        GraphConfig { max_rank: 2, dims: vec![1, 3, 0], allow_empty: true, ..GraphConfig::default() },
        GraphConfig { families: OpFamilies { matmul: true, ..OpFamilies::NONE }, ..GraphConfig::default() },
        GraphConfig { families: OpFamilies::NONE, ..GraphConfig::default() },
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every config yields graphs that verify, without the generator ever proposing an op that
    /// inference rejects (which would silently thin out the coverage).
    #[test]
    fn generated_graphs_are_valid(dice in proptest::collection::vec(any::<u32>(), 0..400), which in 0usize..10) {
        let cfg = &configs()[which];
        let g = build_graph_checked(cfg, &dice).map_err(|e| TestCaseError::fail(format!("generator: {e}")))?;
        g.verify().map_err(|e| TestCaseError::fail(format!("{e}\n{}", g.to_text())))?;
        prop_assert!(!g.inputs().is_empty() && (1..=3).contains(&g.inputs().len()));
        prop_assert!((1..=3).contains(&g.outputs().len()));
        prop_assert!(g.len() - g.inputs().len() <= cfg.max_nodes, "{}", g.to_text());
        for id in g.node_ids() {
            let n = g.node(id);
            prop_assert!(n.shape.rank() <= cfg.max_rank);
            prop_assert!(n.shape.numel() <= cfg.max_numel);
        }
        if !cfg.non_smooth {
            let text = g.to_text();
            for bad in ["Abs(", "Relu(", "Sign(", "Max(", "Min(", "Where(", "Equal(", "Less(", "Greater(", "i64"] {
                prop_assert!(!text.contains(bad), "{bad} in a smooth graph:\n{text}");
            }
        }
    }

    /// `parse(to_text(g))` prints the same text, verifies, and keeps the hash and input names.
    #[test]
    fn text_round_trips(g in arb_graph(GraphConfig::exhaustive())) {
        let text = g.to_text();
        let back = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(back.to_text(), text.clone());
        back.verify().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back.structural_hash(), g.structural_hash());
        let names = |g: &Graph| g.inputs().iter().map(|&i| g.input_name(i).unwrap().to_string()).collect::<Vec<_>>();
        prop_assert_eq!(names(&back), names(&g));
    }

    /// Large graphs round trip too.
    #[test]
    fn text_round_trips_large(g in arb_graph(GraphConfig { max_nodes: 40, ..GraphConfig::exhaustive() })) {
        let text = g.to_text();
        prop_assert_eq!(parse(&text).map(|b| b.to_text()), Ok(text));
    }

    /// Junk made of IR pieces never panics the parser.
    #[test]
    fn parser_survives_noise(src in arb_text_noise()) {
        let _ = parse(&src);
    }

    /// Arbitrary strings never panic the parser.
    #[test]
    fn parser_survives_arbitrary_strings(src in any::<String>()) {
        let _ = parse(&src);
    }

    /// Damaged valid texts parse to valid graphs or fail with a parse error.
    #[test]
    fn parser_survives_mutations(src in arb_mutated_text(GraphConfig::exhaustive())) {
        match parse(&src) {
            Ok(g) => {
                g.verify().map_err(|e| TestCaseError::fail(format!("{e}\n{src}")))?;
                // What parses also prints and re-parses to the same text.
                let text = g.to_text();
                prop_assert_eq!(parse(&text).map(|b| b.to_text()), Ok(text));
            }
            Err(Error::Parse { line, col, .. }) => prop_assert!(line >= 1 && col >= 1),
            Err(e) => prop_assert!(false, "not a parse error: {e:?}"),
        }
    }
}

#[test]
fn invalid_graphs_still_print_without_panicking() {
    // A cycle: y = Neg(x), then every use of x (y itself) is redirected to y.
    let mut g = Graph::new();
    let x = g.scalar(DType::F32, 1.0);
    let y = g.neg(x).unwrap();
    g.replace_uses(x, y).unwrap();
    g.set_outputs(vec![y]);
    let text = g.to_text();
    assert!(text.starts_with("# invalid graph: verify: the graph has a cycle"), "{text}");
    assert!(parse(&text).is_err());
    let _ = (g.to_dot(), g.to_json(), g.structural_hash());

    // A dangling output.
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [2]);
    let y = g.neg(x).unwrap();
    g.set_outputs(vec![y]);
    g.remove(y);
    assert_eq!(g.to_text(), "%0 = Input() {name=\"x\"} : f32[2]\nreturn %!1\n");
    assert!(Graph::from_json(&g.to_json()).is_err());
    let _ = (g.to_dot(), g.structural_hash());
}
