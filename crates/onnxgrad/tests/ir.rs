//! Graph construction: readable scoped names, name clashes, static shape inference and the errors for operands
//! that do not fit. No ONNX Runtime needed.
use onnxgrad::{ConvSpec, DType, Error, GemmSpec, Graph, Op, PoolSpec, Source, Tensor};

#[test]
fn scopes_prefix_names_and_nest() -> onnxgrad::Result<()> {
    let mut g = Graph::new("names");
    let x = g.input("x", DType::F32, &[1, 3, 8, 8])?;
    let w = g.input("d.conv2.weight", DType::F32, &[4, 3, 4, 4])?;
    let y = {
        let mut d = g.scope("d");
        let mut conv2 = d.scope("conv2");
        assert_eq!(conv2.scoped_name("weight"), "d.conv2.weight");
        let y = conv2.conv(x, w, None, &ConvSpec::new2d(2, 1))?;
        let y2 = conv2.conv(x, w, None, &ConvSpec::new2d(2, 1))?;
        assert_eq!(conv2.value_name(y2), "d.conv2.conv_1", "a second conv in the scope gets a fresh name");
        y
    };
    assert_eq!(g.value_name(y), "d.conv2.conv");
    assert_eq!(g.producer(y).unwrap().name, "d.conv2.conv");
    assert_eq!(g.scoped_name("after"), "after", "scopes end with their guard");
    assert_eq!(g.find("d.conv2.conv"), Some(y));
    Ok(())
}

#[test]
fn interface_names_are_exact_and_unique() -> onnxgrad::Result<()> {
    let mut g = Graph::new("io");
    let x = g.input("x", DType::F32, &[2])?;
    assert!(matches!(g.input("x", DType::F32, &[2]), Err(Error::DuplicateName(_))));
    assert!(matches!(g.initializer("x", Tensor::f32(&[1], vec![0.0])?), Err(Error::DuplicateName(_))));
    // An input as an output goes through an Identity node (outputs are always computed).
    let out = g.output(x, "x_out")?;
    assert_ne!(out, x);
    assert_eq!(g.producer(out).unwrap().op, Op::Identity);
    // A node output is renamed in place.
    let y = g.relu(x)?;
    assert_eq!(g.output(y, "y")?, y);
    assert_eq!(g.value_name(y), "y");
    // Declaring the same value twice needs a second (Identity) value.
    let y2 = g.output(y, "y_again")?;
    assert_ne!(y2, y);
    assert!(g.output(y, "y").is_err(), "the name is taken");
    Ok(())
}

#[test]
fn scalar_constants_are_shared() {
    let mut g = Graph::new("consts");
    let a = g.scalar(DType::F32, 0.5);
    let b = g.scalar(DType::F32, 0.5);
    let c = g.scalar(DType::F64, 0.5);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(g.value(a).source, Source::Initializer(Tensor::scalar(DType::F32, 0.5)));
}

#[test]
fn static_shapes() -> onnxgrad::Result<()> {
    let mut g = Graph::new("shapes");
    let x = g.input("x", DType::F32, &[2, 3, 7, 7])?;
    let w = g.input("w", DType::F32, &[5, 3, 4, 4])?;
    let c = g.conv(x, w, None, &ConvSpec::new2d(2, 1))?;
    assert_eq!(g.shape(c), [2, 5, 3, 3]); // floor((7 + 2 - 4) / 2) + 1
    let wt = g.input("wt", DType::F32, &[5, 6, 4, 4])?;
    let t = g.conv_transpose(c, wt, None, &ConvSpec::new2d(2, 1).with_output_padding(1))?;
    assert_eq!(g.shape(t), [2, 6, 7, 7]); // 2 * (3 - 1) + 1 + 4 - 2
    let p = g.max_pool(x, &PoolSpec::new2d(3, 2, 1))?;
    assert_eq!(g.shape(p), [2, 3, 4, 4]);
    let a = g.input("a", DType::F32, &[4, 1, 3])?;
    let b = g.input("b", DType::F32, &[5, 1])?;
    let s = g.add(a, b)?;
    assert_eq!(g.shape(s), [4, 5, 3]);
    let r = g.reduce_sum(s, &[-1, 0], false)?;
    assert_eq!(g.shape(r), [5]);
    let r = g.reshape(s, &[-1, 6])?;
    assert_eq!(g.shape(r), [10, 6]);
    let m1 = g.input("m1", DType::F32, &[3, 4])?;
    let m2 = g.input("m2", DType::F32, &[5, 4])?;
    let gm = g.gemm(m1, m2, None, GemmSpec { trans_b: true, ..GemmSpec::default() })?;
    assert_eq!(g.shape(gm), [3, 5]);
    let cmp = g.greater(m1, m1)?;
    assert_eq!(g.dtype(cmp), DType::Bool);
    Ok(())
}

#[test]
fn operands_that_do_not_fit_are_errors() -> onnxgrad::Result<()> {
    let mut g = Graph::new("errors");
    let x = g.input("x", DType::F32, &[2, 3, 8, 8])?;
    let w_bad = g.input("w_bad", DType::F32, &[4, 2, 3, 3])?;
    assert!(matches!(g.conv(x, w_bad, None, &ConvSpec::new2d(1, 1)), Err(Error::Invalid { .. })));
    let a = g.input("a", DType::F32, &[3, 4])?;
    let b = g.input("b", DType::F32, &[3, 5])?;
    assert!(g.add(a, b).is_err(), "4 and 5 do not broadcast");
    assert!(g.matmul(a, b).is_err(), "inner dimensions differ");
    let d = g.input("d", DType::F64, &[3, 4])?;
    assert!(g.add(a, d).is_err(), "mixed dtypes");
    assert!(g.reshape(a, &[5, -1]).is_err());
    assert!(g.slice(a, &[1], &[2], &[9]).is_err());
    assert!(g.transpose(a, &[0, 0]).is_err());
    let i = g.input("i", DType::I64, &[3])?;
    assert!(g.tanh(i).is_err(), "float ops need float inputs");
    let w = g.input("w", DType::F32, &[3, 4, 4, 4])?;
    let too_much = ConvSpec::new2d(2, 1).with_output_padding(2);
    assert!(g.conv_transpose(x, w, None, &too_much).is_err(), "output_padding must stay below the stride");
    Ok(())
}
