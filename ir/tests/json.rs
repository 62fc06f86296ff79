//! The JSON form: snapshots, round trips and the reader's checks and error messages.

use kiln_ir::testing::{arb_graph, sample_every_op, sample_linear, sample_square_exp, GraphConfig};
use kiln_ir::{Error, Graph};
use proptest::prelude::*;

#[test]
fn snapshot_linear_json() {
    insta::assert_snapshot!(sample_linear().to_json());
}

#[test]
fn snapshot_square_exp_json() {
    insta::assert_snapshot!(sample_square_exp().to_json());
}

#[test]
fn samples_round_trip() {
    for g in [sample_linear(), sample_square_exp(), sample_every_op(), Graph::new()] {
        let json = g.to_json();
        let back = Graph::from_json(&json).unwrap();
        assert_eq!(back.to_text(), g.to_text());
        assert_eq!(back.to_json(), json);
        assert_eq!(back.structural_hash(), g.structural_hash());
        back.verify().unwrap();
    }
}

#[test]
fn special_floats_are_strings_and_read_back_exactly() {
    let g = sample_every_op();
    let json = g.to_json();
    assert!(json.contains("\"inf\"") && json.contains("\"-inf\"") && json.contains("\"NaN\""), "{json}");
    assert!(json.contains("\"-0.0\"") && json.contains("\"1e-7\""), "{json}");
    // i64 and bool data stay JSON numbers and booleans.
    assert!(json.contains("-2") && json.contains("false"));
}

fn err(src: &str) -> String {
    match Graph::from_json(src) {
        Ok(g) => panic!("read, expected an error:\n{}", g.to_text()),
        Err(e @ Error::Json(_)) => e.to_string(),
        Err(e) => panic!("not a JSON error: {e:?}"),
    }
}

/// A small valid document, edited by the error tests.
const DOC: &str = r#"{
  "nodes": [
    { "op": { "Input": { "name": "x", "param": false } }, "dtype": "f32", "shape": [3] },
    { "op": { "Constant": { "dtype": "f32", "data": [2, "0.5", 1e3] } }, "dtype": "f32", "shape": [3] },
    { "op": { "Binary": "Mul" }, "operands": [0, 1], "dtype": "f32", "shape": [3] }
  ],
  "inputs": [0],
  "outputs": [2]
}"#;

#[test]
fn hand_written_json_with_number_data_and_no_version_is_read() {
    let g = Graph::from_json(DOC).unwrap();
    assert_eq!(
        g.to_text(),
        "%0 = Input() {name=\"x\"} : f32[3]\n%1 = Constant() {value=[2.0,0.5,1000.0]} : f32[3]\n\
         %2 = Mul(%0, %1) : f32[3]\nreturn %2\n"
    );
}

#[test]
fn malformed_json_reports_line_and_column() {
    assert_eq!(err("{\n  \"nodes\": [\n    }\n"), "json: expected value at line 3 column 5");
    assert_eq!(err(""), "json: EOF while parsing a value at line 1 column 0");
    assert_eq!(
        err(r#"{"nodes": [], "inputs": [], "outputs": [], "extra": 1}"#),
        "json: unknown field `extra`, expected one of `version`, `nodes`, `inputs`, `outputs` at line 1 column 50"
    );
    assert_eq!(
        err(r#"{"nodes": [{"op": "Where", "dtype": "f16", "shape": []}], "inputs": [], "outputs": []}"#),
        "json: unknown variant `f16`, expected one of `f32`, `f64`, `i64`, `bool` at line 1 column 41"
    );
    assert_eq!(err(r#"{"nodes": []}"#), "json: missing field `inputs` at line 1 column 13");
}

#[test]
fn reader_errors_name_the_node() {
    let cases: &[(&str, &str, &str)] = &[
        (r#""Binary": "Mul""#, r#""Binary": "Mull""#, "json: node 2: op: unknown variant `Mull`, expected one of `Add`, `Sub`, `Mul`, `Div`, `Pow`, `Max`, `Min`"),
        (r#""operands": [0, 1]"#, r#""operands": [0, 2]"#, "json: node 2 (Mul): operand 1 refers to node 2, which is not defined before it"),
        (r#""operands": [0, 1]"#, r#""operands": [0, 9]"#, "json: node 2 (Mul): operand 1 refers to node 9, which is not defined before it"),
        (r#""operands": [0, 1]"#, r#""operands": [0]"#, "json: node 2 (Mul): Mul: expects 2 operand(s), got 1"),
        (r#""dtype": "f32", "shape": [3] }
  ],"#, r#""dtype": "f32", "shape": [4] }
  ],"#, "json: node 2 (Mul): is typed f32[4] but its operands give f32[3]"),
        (r#""data": [2, "0.5", 1e3]"#, r#""data": [2, "0.5"]"#, "json: node 1 (Constant): Constant: 2 values given for shape [3] (3 elements)"),
        (r#""data": [2, "0.5", 1e3]"#, r#""data": [2, "half", 1e3]"#, "json: node 1: op: Constant: data[1]: expected f32 value, found \"half\""),
        (r#""data": [2, "0.5", 1e3]"#, r#""data": [2, null, 1e3]"#, "json: node 1: op: Constant: data[1]: expected f32 value, found null"),
        (r#"{ "dtype": "f32", "data""#, r#"{ "dtype": "f64", "data""#, "json: node 1 (Constant): holds f64 values but is typed f32"),
        (r#"{ "dtype": "f32", "data""#, r#"{ "dtype": "f32", "size": 3, "data""#, "json: node 1: op: Constant: unknown field `size`, expected `dtype` or `data`"),
        (r#""inputs": [0]"#, r#""inputs": []"#, "json: node 0: an Input missing from the inputs list"),
        (r#""inputs": [0]"#, r#""inputs": [0, 0]"#, "json: inputs[1]: node 0 is listed twice"),
        (r#""inputs": [0]"#, r#""inputs": [0, 2]"#, "json: inputs[1]: node 2 is a Mul, not an Input"),
        (r#""inputs": [0]"#, r#""inputs": [0, 5]"#, "json: inputs[1]: node 5 does not exist (3 nodes)"),
        (r#""outputs": [2]"#, r#""outputs": [2, 3]"#, "json: outputs[1]: node 3 does not exist (3 nodes)"),
        (r#""outputs": [2]"#, r#""outputs": [2], "version": 2"#, "json: unsupported version 2 (expected 1)"),
        (r#""shape": [3] },
    { "op": { "Constant""#, r#""shape": [3], "operands": [0] },
    { "op": { "Constant""#, "json: node 0: Input takes no operands"),
        (r#""shape": [3] },
    { "op": { "Constant""#, r#""shape": [9007199254740993] },
    { "op": { "Constant""#, "json: node 0: shape: extent 9007199254740993 is larger than the supported maximum 2^53"),
    ];
    let mut wrong = Vec::new();
    for (from, to, want) in cases {
        assert_eq!(DOC.matches(from).count(), 1, "{from}");
        let src = DOC.replace(from, to);
        let got = err(&src);
        if got != *want {
            wrong.push(format!("{src}\n  got:  {got}\n  want: {want}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn inputs_take_the_order_of_the_inputs_list() {
    let src = r#"{
      "nodes": [
        { "op": { "Input": { "name": "a", "param": false } }, "dtype": "f64", "shape": [] },
        { "op": { "Input": { "name": "b", "param": true } }, "dtype": "f64", "shape": [] },
        { "op": { "Binary": "Sub" }, "operands": [0, 1], "dtype": "f64", "shape": [] }
      ],
      "inputs": [1, 0],
      "outputs": [2]
    }"#;
    let g = Graph::from_json(src).unwrap();
    let names: Vec<_> = g.inputs().iter().map(|&i| g.input_name(i).unwrap()).collect();
    assert_eq!(names, ["b", "a"]);
    assert_eq!(
        g.to_text(),
        "%0 = Input() {name=\"b\", param=true} : f64[]\n%1 = Input() {name=\"a\"} : f64[]\n\
         %2 = Sub(%1, %0) : f64[]\nreturn %2\n"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// JSON round trips keep the graph (compared through its text), the hash, and the JSON itself.
    #[test]
    fn json_round_trips(g in arb_graph(GraphConfig::exhaustive())) {
        let json = g.to_json();
        let back = Graph::from_json(&json).map_err(|e| TestCaseError::fail(format!("{e}\n{json}")))?;
        prop_assert_eq!(back.to_text(), g.to_text());
        prop_assert_eq!(back.to_json(), json);
        prop_assert_eq!(back.structural_hash(), g.structural_hash());
        back.verify().map_err(|e| TestCaseError::fail(e.to_string()))?;
    }

    /// Damaged JSON never panics the reader; what it accepts is a valid graph.
    #[test]
    fn reader_survives_damage(g in arb_graph(GraphConfig::default()), at in any::<u32>(), len in 0usize..20, with in "[0-9\\[\\]{},:\" a-z-]{0,6}") {
        let json = g.to_json();
        let chars: Vec<char> = json.chars().collect();
        let i = at as usize % (chars.len() + 1);
        let j = (i + len).min(chars.len());
        let damaged: String = chars[..i].iter().copied().chain(with.chars()).chain(chars[j..].iter().copied()).collect();
        if let Ok(g2) = Graph::from_json(&damaged) {
            g2.verify().map_err(|e| TestCaseError::fail(format!("{e}\n{damaged}")))?;
        }
    }
}
