//! `simplify`: snapshots of each rewrite from IR text, and a property test that it never changes
//! what a graph computes (reference interpreter before and after, on random graphs and inputs).

use kiln_ir::interp::{allclose, run, Value};
use kiln_ir::testing::{arb_graph_with_inputs, GraphConfig};
use kiln_ir::{parse, Graph, Literal};
use kiln_passes::simplify;
use proptest::prelude::*;

fn simplified(src: &str) -> String {
    let mut g = parse(src).unwrap();
    let stats = simplify(&mut g).unwrap();
    g.verify().unwrap();
    format!("{}# {stats:?}\n", g.to_text())
}

macro_rules! snap {
    ($($name:ident: $src:expr;)*) => {
        $(
            #[test]
            fn $name() {
                insta::assert_snapshot!(stringify!($name), simplified($src));
            }
        )*
    };
}

snap! {
    folds_constants: "%0 = Input() {name=\"x\"} : f32[2]\n%1 = Constant() {value=[2.0]} : f32[]\n%2 = Constant() {value=[3.0]} : f32[]\n%3 = Mul(%1, %2) : f32[]\n%4 = Exp(%3) : f32[]\n%5 = Add(%0, %4) : f32[2]\nreturn %5\n";
    does_not_fold_large_broadcasts: "%0 = Constant() {value=[2.0]} : f32[]\n%1 = Expand(%0) {shape=[64,64]} : f32[64,64]\n%2 = Exp(%1) : f32[64,64]\nreturn %2\n";
    mul_one_add_zero_div_one: "%0 = Input() {name=\"x\"} : f32[3]\n%1 = Constant() {value=[1.0]} : f32[]\n%2 = Constant() {value=[0.0]} : f32[]\n%3 = Mul(%1, %0) : f32[3]\n%4 = Add(%3, %2) : f32[3]\n%5 = Div(%4, %1) : f32[3]\n%6 = Sub(%5, %2) : f32[3]\nreturn %6\n";
    mul_one_that_broadcasts_becomes_expand: "%0 = Input() {name=\"x\"} : f32[3]\n%1 = Constant() {value=[1.0,1.0]} : f32[2,1]\n%2 = Mul(%0, %1) : f32[2,3]\nreturn %2\n";
    float_mul_zero_is_kept: "%0 = Input() {name=\"x\"} : f32[3]\n%1 = Constant() {value=[0.0]} : f32[]\n%2 = Mul(%0, %1) : f32[3]\nreturn %2\n";
    int_mul_zero_folds: "%0 = Input() {name=\"k\"} : i64[3]\n%1 = Constant() {value=[0]} : i64[]\n%2 = Mul(%0, %1) : i64[3]\nreturn %2\n";
    double_negation: "%0 = Input() {name=\"x\"} : f32[3]\n%1 = Neg(%0) : f32[3]\n%2 = Neg(%1) : f32[3]\nreturn %2\n";
    reshape_of_reshape: "%0 = Input() {name=\"x\"} : f32[2,3]\n%1 = Reshape(%0) {shape=[3,2]} : f32[3,2]\n%2 = Reshape(%1) {shape=[6]} : f32[6]\n%3 = Reshape(%2) {shape=[2,3]} : f32[2,3]\nreturn %2, %3\n";
    transpose_of_transpose: "%0 = Input() {name=\"x\"} : f32[2,3,4]\n%1 = Transpose(%0) {perm=[2,0,1]} : f32[4,2,3]\n%2 = Transpose(%1) {perm=[1,2,0]} : f32[2,3,4]\n%3 = Transpose(%1) {perm=[0,2,1]} : f32[4,3,2]\nreturn %2, %3\n";
    transposed_product_swaps_operands: "%0 = Input() {name=\"x\"} : f32[4,3]\n%1 = Input() {name=\"g\"} : f32[4,5]\n%2 = Transpose(%0) {perm=[1,0]} : f32[3,4]\n%3 = MatMul(%2, %1) : f32[3,5]\n%4 = Transpose(%3) {perm=[1,0]} : f32[5,3]\nreturn %4\n";
    transposed_batched_product: "%0 = Input() {name=\"a\"} : f32[2,4,3]\n%1 = Input() {name=\"b\"} : f32[3,5]\n%2 = MatMul(%0, %1) : f32[2,4,5]\n%3 = Transpose(%2) {perm=[0,2,1]} : f32[2,5,4]\nreturn %3\n";
    transposed_product_with_other_users_is_kept: "%0 = Input() {name=\"a\"} : f32[4,3]\n%1 = Input() {name=\"b\"} : f32[3,5]\n%2 = MatMul(%0, %1) : f32[4,5]\n%3 = Transpose(%2) {perm=[1,0]} : f32[5,4]\nreturn %2, %3\n";
    expand_that_does_nothing: "%0 = Input() {name=\"x\"} : f32[2,3]\n%1 = Expand(%0) {shape=[2,3]} : f32[2,3]\n%2 = Exp(%1) : f32[2,3]\nreturn %2\n";
    pow_two_and_one: "%0 = Input() {name=\"x\"} : f32[3]\n%1 = Constant() {value=[2.0]} : f32[]\n%2 = Pow(%0, %1) : f32[3]\n%3 = Constant() {value=[1.0]} : f32[]\n%4 = Pow(%2, %3) : f32[3]\nreturn %4\n";
    common_subexpressions: "%0 = Input() {name=\"x\"} : f32[3]\n%1 = Exp(%0) : f32[3]\n%2 = Exp(%0) : f32[3]\n%3 = Constant() {value=[2.0]} : f32[]\n%4 = Constant() {value=[2.0]} : f32[]\n%5 = Mul(%1, %3) : f32[3]\n%6 = Mul(%2, %4) : f32[3]\n%7 = Add(%5, %6) : f32[3]\nreturn %7\n";
    dead_code: "%0 = Input() {name=\"x\"} : f32[3]\n%1 = Input() {name=\"unused\"} : f32[3]\n%2 = Exp(%0) : f32[3]\n%3 = Log(%0) : f32[3]\nreturn %2\n";
    reduce_over_unit_axes: "%0 = Input() {name=\"x\"} : f32[3,1]\n%1 = ReduceSum(%0) {axes=[1], keepdims=false} : f32[3]\nreturn %1\n";
}

fn values(g: &Graph, inputs: &[Literal]) -> Vec<Value> {
    g.inputs().iter().zip(inputs).map(|(&i, l)| Value::from_literal(l, &g.node(i).shape).unwrap()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn simplify_preserves_results((g, inputs) in arb_graph_with_inputs(GraphConfig::default())) {
        let vals = values(&g, &inputs);
        let before = run(&g, &vals).unwrap();
        let mut s = g.clone();
        simplify(&mut s).unwrap();
        prop_assert!(s.verify().is_ok(), "{}", s.to_text());
        let after = run(&s, &vals).unwrap();
        for (a, b) in after.iter().zip(&before) {
            prop_assert!(allclose(a, b, 1e-6, 1e-6), "before:\n{}\nafter:\n{}\n{a:?} vs {b:?}", g.to_text(), s.to_text());
        }
    }
}
